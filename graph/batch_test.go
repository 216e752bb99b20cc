package graph_test

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// batchResult is one response of a $batch answer, decoded strictly in the
// shape the Go SDK needs: string id, number status, string headers.
type batchResult struct {
	ID      string            `json:"id"`
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    map[string]any    `json:"body"`
}

func (e *env) batch(t *testing.T, body any, opts ...reqOpt) map[string]batchResult {
	t.Helper()
	r := e.do("POST", "/v1.0/$batch", body, append([]reqOpt{header("Content-Type", "application/json")}, opts...)...).must(t, http.StatusOK)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("batch Content-Type = %q", ct)
	}
	var ans struct {
		Responses []batchResult `json:"responses"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ans); err != nil {
		t.Fatalf("batch answer does not parse: %v\n%s", err, r.body)
	}
	out := map[string]batchResult{}
	for _, res := range ans.Responses {
		if _, dup := out[res.ID]; dup {
			t.Errorf("id %q answered twice", res.ID)
		}
		out[res.ID] = res
	}
	return out
}

func TestBatch(t *testing.T) {
	e := newEnv(t)
	reqs := []map[string]any{
		{"id": "1", "method": "POST", "url": "/me/drive/root/children", "body": map[string]any{"name": "f", "folder": map[string]any{}},
			"headers": map[string]any{"Content-Type": "application/json"}},
		{"id": "2", "method": "PUT", "url": "/me/drive/root:/f/a.txt:/content", "dependsOn": []string{"1"},
			"headers": map[string]any{"Content-Type": "text/plain"}, "body": base64.StdEncoding.EncodeToString([]byte("hello"))},
		{"id": "3", "method": "GET", "url": "/me/drive/root:/f/a.txt", "dependsOn": []string{"2"}},
		{"id": "4", "method": "GET", "url": "/me/drive/items/NOPE"},
		{"id": "5", "method": "DELETE", "url": "/me/drive/items/NOPE", "dependsOn": []string{"4"}},
		{"id": "6", "method": "GET", "url": "/v1.0/me/drive", "dependsOn": []string{"5"}},
		{"id": "7", "method": "POST", "url": "/me/drive/root:/f:/children", "dependsOn": []string{"1"},
			"headers": map[string]any{"Prefer": "respond-async"},
			"body":    map[string]any{"name": "dl.bin", "@microsoft.graph.sourceUrl": "http://example.com/x", "file": map[string]any{}}},
		{"id": "8", "method": "GET", "url": "me/drive/root/children?$select=name"},
		{"id": "9", "method": "GET", "url": "/me/drive/root:/f/a.txt:/content", "dependsOn": []string{"2"}},
	}
	res := e.batch(t, map[string]any{"requests": reqs})
	if len(res) != len(reqs) {
		t.Fatalf("got %d answers for %d requests", len(res), len(reqs))
	}
	for _, tt := range []struct {
		id     string
		status int
	}{{"1", 201}, {"2", 201}, {"3", 200}, {"4", 404}, {"5", 424}, {"6", 424}, {"7", 202}, {"8", 200}, {"9", 302}} {
		r := res[tt.id]
		if r.Status != tt.status {
			t.Errorf("request %s: status %d, want %d (%v)", tt.id, r.Status, tt.status, r.Body)
		}
		if r.Status != 202 && r.Status != 302 && (r.Body == nil || !strings.HasPrefix(r.Headers["Content-Type"], "application/json")) {
			t.Errorf("request %s: body %v with headers %v, want a JSON object", tt.id, r.Body, r.Headers)
		}
	}
	if got := res["3"].Body["size"]; got != float64(5) {
		t.Errorf("the file uploaded in the batch has size %v, want 5", got)
	}
	if got := e.do("GET", "/v1.0/me/drive/root:/f/a.txt:/content", nil); got.StatusCode != http.StatusFound {
		t.Errorf("GET content after the batch: %d", got.StatusCode)
	}
	for _, id := range []string{"4", "5"} {
		code := res[id].Body["error"].(map[string]any)["code"]
		if want := map[string]string{"4": "itemNotFound", "5": "failedDependency"}[id]; code != want {
			t.Errorf("request %s: error code %v, want %s", id, code, want)
		}
	}
	if loc := res["7"].Headers["Location"]; !strings.HasPrefix(loc, e.srv.URL+"/monitor/") {
		t.Errorf("upload from URL in a batch: Location %q, want an absolute monitor URL", loc)
	}
	if loc := res["9"].Headers["Location"]; !strings.HasPrefix(loc, e.srv.URL+"/") {
		t.Errorf("content in a batch: Location %q, want an absolute download URL", loc)
	}
	if got := names(t, res["8"].Body); len(got) != 1 || got[0] != "f" {
		t.Errorf("children in a batch = %v", got)
	}
	golden(t, "batch", e.do("POST", "/v1.0/$batch", map[string]any{"requests": []map[string]any{
		{"id": "a", "method": "GET", "url": "/me/drive/items/NOPE"},
		{"id": "b", "method": "GET", "url": "/me/drive/root:/f", "dependsOn": []string{"a"}},
	}}).must(t, http.StatusOK).body)
}

// TestBatchGoSDK sends a batch the way the Go SDK does: gzip-compressed,
// lower-case header names, "body": null on GET, "dependsOn": [] always,
// random ids, version-less URLs.
func TestBatchGoSDK(t *testing.T) {
	e := newEnv(t)
	e.mkdir("", "docs")
	raw := `{"requests":[
		{"id":"6f1c1bd5-6d70-4a5c-9c7b-0c8e2e3b2f11","method":"GET","url":"/drives/` + string(e.drive.ID) + `/items/root/children","headers":{"accept":"application/json"},"body":null,"dependsOn":[]},
		{"id":"0b3c7a2e-9e1f-4a47-8c0e-5d1b2a3c4d5e","method":"POST","url":"/drives/` + string(e.drive.ID) + `/items/root/children","headers":{"content-type":"application/json"},
		 "body":{"@odata.type":"#microsoft.graph.driveItem","name":"made","folder":{}},"dependsOn":[]}]}`
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(raw))
	zw.Close()
	res := e.batch(t, gz.Bytes(), header("Content-Encoding", "gzip"))
	if r := res["6f1c1bd5-6d70-4a5c-9c7b-0c8e2e3b2f11"]; r.Status != 200 || len(names(t, r.Body)) != 1 {
		t.Errorf("GET children in a Go SDK batch = %+v", r)
	}
	if r := res["0b3c7a2e-9e1f-4a47-8c0e-5d1b2a3c4d5e"]; r.Status != 201 || r.Body["name"] != "made" {
		t.Errorf("POST children in a Go SDK batch = %+v", r)
	}
}

func TestBatchScopesAndErrors(t *testing.T) {
	e := newEnv(t)
	e.put("/x.txt", "x")
	// A read-only token may batch reads; each write inside is refused.
	res := e.batch(t, map[string]any{"requests": []map[string]any{
		{"id": "r", "method": "GET", "url": "/me/drive/root:/x.txt"},
		{"id": "w", "method": "DELETE", "url": "/me/drive/root:/x.txt"},
	}}, bearer(e.ro))
	if res["r"].Status != 200 || res["w"].Status != 403 {
		t.Errorf("read-only batch: statuses %d and %d, want 200 and 403", res["r"].Status, res["w"].Status)
	}
	// The token inside a request does not count: the batch's does.
	res = e.batch(t, map[string]any{"requests": []map[string]any{
		{"id": "1", "method": "DELETE", "url": "/me/drive/root:/x.txt", "headers": map[string]string{"Authorization": "Bearer " + e.token}},
	}}, bearer(e.ro))
	if res["1"].Status != 403 {
		t.Errorf("a request carrying another token: status %d, want 403", res["1"].Status)
	}
	// Another user's token sees another drive.
	res = e.batch(t, map[string]any{"requests": []map[string]any{{"id": "1", "method": "GET", "url": "/me/drive/root:/x.txt"}}}, bearer(e.other))
	if res["1"].Status != 404 {
		t.Errorf("another user's batch: status %d, want 404", res["1"].Status)
	}

	many := make([]map[string]any, 21)
	for i := range many {
		many[i] = map[string]any{"id": fmt.Sprint(i), "method": "GET", "url": "/me/drive"}
	}
	get := func(id string, deps ...string) map[string]any {
		return map[string]any{"id": id, "method": "GET", "url": "/me/drive", "dependsOn": deps}
	}
	for _, tt := range []struct {
		name string
		body any
	}{
		{"not JSON", "{"},
		{"no requests", map[string]any{}},
		{"empty", map[string]any{"requests": []any{}}},
		{"21 requests", map[string]any{"requests": many}},
		{"repeated id", map[string]any{"requests": []any{get("1"), get("1")}}},
		{"no id", map[string]any{"requests": []any{get("")}}},
		{"unknown dependency", map[string]any{"requests": []any{get("1", "2")}}},
		{"cycle", map[string]any{"requests": []any{get("1", "2"), get("2", "1")}}},
		{"absolute url", map[string]any{"requests": []any{map[string]any{"id": "1", "method": "GET", "url": "http://evil.example/me/drive"}}}},
		{"nested batch", map[string]any{"requests": []any{map[string]any{"id": "1", "method": "POST", "url": "/$batch"}}}},
		{"bad method", map[string]any{"requests": []any{map[string]any{"id": "1", "method": "TRACE", "url": "/me/drive"}}}},
		{"no url", map[string]any{"requests": []any{map[string]any{"id": "1", "method": "GET"}}}},
		{"requests not an array", map[string]any{"requests": "x"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.do("POST", "/v1.0/$batch", tt.body, header("Content-Type", "application/json")).wantError(t, http.StatusBadRequest, "invalidRequest")
		})
	}
	big := strings.Repeat("x", 5<<20)
	e.do("POST", "/v1.0/$batch", `{"requests":[],"pad":"`+big+`"}`).wantError(t, http.StatusRequestEntityTooLarge, "invalidRequest")
	e.do("POST", "/v1.0/$batch", map[string]any{"requests": []any{get("1")}}, noAuth()).wantError(t, http.StatusUnauthorized, "unauthenticated")
	e.do("POST", "/v1.0/$batch", map[string]any{"requests": []any{get("1")}}, bearer("nope")).wantError(t, http.StatusUnauthorized, "unauthenticated")
	e.do("GET", "/v1.0/$batch", nil).wantError(t, http.StatusMethodNotAllowed, "notAllowed")
	e.do("POST", "/v2.0/$batch", map[string]any{"requests": []any{get("1")}}).must(t, http.StatusOK)
	// A bad base64 body fails that request only.
	res = e.batch(t, map[string]any{"requests": []any{
		map[string]any{"id": "1", "method": "PUT", "url": "/me/drive/root:/y.txt:/content", "headers": map[string]string{"Content-Type": "text/plain"}, "body": "%%%"},
		get("2"),
	}})
	if res["1"].Status != 400 || res["2"].Status != 200 {
		t.Errorf("bad base64: statuses %d, %d; want 400, 200", res["1"].Status, res["2"].Status)
	}
	// Unclean paths inside a batch are refused as they are outside.
	res = e.batch(t, map[string]any{"requests": []any{map[string]any{"id": "1", "method": "GET", "url": "/me/drive/root:/a/../x.txt"}}})
	if res["1"].Status != 400 {
		t.Errorf("a path with .. in a batch: status %d, want 400", res["1"].Status)
	}
}
