package jobs

import (
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob"
	"github.com/ferrydrive/ferry/fetch"
)

// Checkpoints as version 1 (the single-stream download of Ferry before
// segmented downloads) wrote them, byte for byte: jobs in an existing
// database must resume after an upgrade.
func TestDecodeCheckpointV1(t *testing.T) {
	started := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	hs := blob.NewHasher()
	hs.Write([]byte("hello"))
	hstate, _ := hs.MarshalBinary()
	for _, tt := range []struct {
		name     string
		data     string
		wantHist history
		want     state
	}{{
		name:     "fetching with a prefix and its hash state",
		data:     `{"offset":5,"total":11,"etag":"\"v1\"","lastModified":"Mon, 02 Jan 2026 03:04:05 GMT","hash":"` + b64(hstate) + `","name":"a.bin","contentType":"text/plain","stalls":1,"best":5,"started":"2026-11-25T10:00:00Z"}`,
		wantHist: history{Started: started, Stalls: 1, Best: 5},
		want: &fetching{
			Source:  sourceInfo{ETag: `"v1"`, LastModified: "Mon, 02 Jan 2026 03:04:05 GMT", Total: 11, Name: "a.bin", ContentType: "text/plain"},
			Written: []blob.Range{{Start: 0, End: 5}},
			Hashed:  5,
			Hash:    hstate,
		},
	}, {
		name:     "fetching, restarted from zero, unknown total",
		data:     `{"offset":0,"total":-1,"started":"2026-11-25T10:00:00Z"}`,
		wantHist: history{Started: started},
		want:     &fetching{Source: sourceInfo{Total: -1}},
	}, {
		name:     "fetching without hash state (rehashed on resume)",
		data:     `{"offset":7,"total":-1}`,
		wantHist: history{},
		want:     &fetching{Source: sourceInfo{Total: -1}, Written: []blob.Range{{Start: 0, End: 7}}},
	}, {
		name:     "published blob awaiting its commit",
		data:     `{"offset":11,"total":11,"etag":"\"v1\"","stalls":2,"best":11,"started":"2026-11-25T10:00:00Z","blobKey":"KEY123","size":11,"hashes":{"QuickXor":"qx","SHA1":"S1","SHA256":"S256"},"mime":"text/plain","fileName":"a.bin"}`,
		wantHist: history{Started: started, Stalls: 2, Best: 11},
		want:     &published{Key: "KEY123", Size: 11, Hashes: ferry.Hashes{QuickXor: "qx", SHA1: "S1", SHA256: "S256"}, Mime: "text/plain", FileName: "a.bin"},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			h, s, err := decodeCheckpoint([]byte(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantHist, h); diff != "" {
				t.Errorf("history (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, s, cmp.AllowUnexported(fetching{})); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
		})
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// Version 2 round trips, for both states.
func TestCheckpointV2RoundTrip(t *testing.T) {
	hist := history{Started: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Stalls: 1, Best: 9}
	for _, s := range []state{
		&fetching{Source: sourceInfo{ETag: `"e"`, Total: 100, Ranges: true, Name: "n"},
			Written: []blob.Range{{Start: 0, End: 10}, {Start: 40, End: 60}}, Hashed: 8, Hash: []byte("state")},
		&fetching{Source: sourceInfo{Total: -1}},
		&published{Key: "K", Size: 3, Hashes: ferry.Hashes{SHA256: "X"}, FileName: "f"},
	} {
		data, err := encodeCheckpoint(hist, s)
		if err != nil {
			t.Fatal(err)
		}
		h, got, err := decodeCheckpoint(data)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(hist, h); diff != "" {
			t.Errorf("history (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(s, got, cmp.AllowUnexported(fetching{})); diff != "" {
			t.Errorf("state %s (-want +got):\n%s", data, diff)
		}
	}
}

func TestDecodeCheckpointRejects(t *testing.T) {
	for _, data := range []string{`{"v":3}`, `not json`, `{"v":2,"fetching":7}`} {
		if _, _, err := decodeCheckpoint([]byte(data)); err == nil {
			t.Errorf("decodeCheckpoint(%s) succeeded, want an error", data)
		}
	}
	if _, s, err := decodeCheckpoint(nil); err != nil || s.(*fetching).Source.Total != -1 {
		t.Errorf("empty checkpoint = %+v, %v; want a fresh fetching state", s, err)
	}
	if got := heldBlob([]byte(`{"offset":3,"blobKey":"B","size":3}`)); got != "B" {
		t.Errorf("heldBlob(v1) = %q, want B", got)
	}
	if got := heldBlob([]byte(`{"v":2,"published":{"key":"C","size":1,"fileName":"f"}}`)); got != "C" {
		t.Errorf("heldBlob(v2) = %q, want C", got)
	}
}

// decide is the one place that picks an attempt's outcome.
func TestDecide(t *testing.T) {
	q := &Queue{cfg: Config{MaxStalls: 3, MaxDuration: time.Hour}}
	transientErr := &fetch.Error{Code: fetch.CodeReset, Message: "reset"}
	notFound := &fetch.Error{Permanent: true, Code: fetch.CodeNotFound, Message: "gone"}
	forbidden := &fetch.Error{Permanent: true, Code: fetch.CodeHTTPStatus, Status: 403, Message: "no"}
	for _, tt := range []struct {
		name       string
		err, cause error
		stopping   bool
		progressed bool
		stalls     int
		last       bool
		want       verdictKind
		code       ferry.JobErrorCode
	}{
		{name: "success", want: verdictDone},
		{name: "claim lost", err: transientErr, cause: errClaimLost, want: verdictLost},
		{name: "cancel", err: transientErr, cause: errCancelRequested, want: verdictCancel},
		{name: "too long", err: transientErr, cause: errTooLong, want: verdictFail, code: ferry.JobTimeout},
		{name: "stopping", err: transientErr, stopping: true, want: verdictStop},
		{name: "job failure", err: &failure{code: ferry.JobQuotaLimitReached}, want: verdictFail, code: ferry.JobQuotaLimitReached},
		{name: "404", err: notFound, want: verdictFail, code: ferry.JobItemNotFound},
		{name: "403", err: forbidden, want: verdictFail, code: ferry.JobAccessDenied},
		{name: "transient with progress", err: transientErr, progressed: true, stalls: 2, want: verdictRetry},
		{name: "transient, first stall", err: transientErr, want: verdictRetry},
		{name: "transient, third stall", err: transientErr, stalls: 2, want: verdictFail, code: ferry.JobGeneralException},
		{name: "source changed, retried", err: errSourceChanged, want: verdictRetry},
		{name: "last attempt", err: transientErr, progressed: true, last: true, want: verdictFail, code: ferry.JobGeneralException},
		{name: "wrapped failure", err: errors.Join(errShort, &failure{code: ferry.JobHashMismatch}), want: verdictFail, code: ferry.JobHashMismatch},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := q.decide(tt.err, tt.cause, tt.stopping, tt.progressed, tt.stalls, tt.last)
			if v.kind != tt.want {
				t.Fatalf("kind = %d, want %d", v.kind, tt.want)
			}
			if tt.code != "" && (v.failure == nil || v.failure.code != tt.code) {
				t.Errorf("failure = %+v, want code %s", v.failure, tt.code)
			}
			if v.failure != nil && v.failure.msg == "" && tt.code != ferry.JobQuotaLimitReached && tt.code != ferry.JobHashMismatch {
				t.Errorf("failure %s has no message", v.failure.code)
			}
		})
	}
}
