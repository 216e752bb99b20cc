package ferrytest_test

import (
	"testing"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/ferrytest"
)

func TestMemBlobStore(t *testing.T) {
	ferrytest.TestBlobStore(t, func(t *testing.T) ferry.BlobStore { return ferrytest.NewBlobStore() })
}
