package ferrytest_test

import (
	"testing"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/ferrytest"
)

func TestMemSessionStore(t *testing.T) {
	ferrytest.TestSessionStore(t, func(t *testing.T) ferry.SessionStore { return ferrytest.NewSessionStore() })
}
