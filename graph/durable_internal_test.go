package graph

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// orderRecorder logs the order of a response's header, body and flushes.
type orderRecorder struct {
	*httptest.ResponseRecorder
	log *[]string
}

func (o orderRecorder) WriteHeader(code int) {
	*o.log = append(*o.log, "header")
	o.ResponseRecorder.WriteHeader(code)
}

func (o orderRecorder) Write(p []byte) (int, error) {
	*o.log = append(*o.log, "body")
	return o.ResponseRecorder.Write(p)
}

func (o orderRecorder) Flush() {
	*o.log = append(*o.log, "flush")
	o.ResponseRecorder.Flush()
}

// TestResponsesWaitForDurable: a response's header, and each flush of an
// event stream, go out only after Deps.Durable returned, so that a client
// never sees a commit that is not durable yet.
func TestResponsesWaitForDurable(t *testing.T) {
	for _, tt := range []struct {
		name    string
		handler http.HandlerFunc
		want    []string
	}{
		{"explicit header", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte("{}"))
		}, []string{"durable", "header", "body"}},
		{"implicit header", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("{}"))
		}, []string{"durable", "body"}},
		{"event stream", func(w http.ResponseWriter, r *http.Request) {
			s, err := startEventStream(w)
			if err != nil {
				t.Error(err)
				return
			}
			s.send("", []byte("{}"), "")
		}, []string{"durable", "header", "durable", "flush", "body", "durable", "flush"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var log []string
			h := showOnlyDurable(func() { log = append(log, "durable") }, tt.handler)
			h.ServeHTTP(orderRecorder{httptest.NewRecorder(), &log}, httptest.NewRequest("GET", "/", nil))
			if !slices.Equal(log, tt.want) {
				t.Fatalf("order %v, want %v", log, tt.want)
			}
		})
	}
}
