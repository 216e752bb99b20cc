package fsblob_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob/fsblob"
	"github.com/ferrydrive/ferry/ferrytest"
)

func newStore(t *testing.T) *fsblob.Store {
	t.Helper()
	s, err := fsblob.New(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	ferrytest.TestBlobStore(t, func(t *testing.T) ferry.BlobStore { return newStore(t) })
}

func TestNewCreatesDirs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	if _, err := fsblob.New(dir); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"staging", "blobs"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v, want a directory", sub, err)
		}
	}
	// A second New on the same directory reuses it.
	if _, err := fsblob.New(dir); err != nil {
		t.Errorf("New on an existing directory: %v", err)
	}
}

// TestNoPathEscape plants files where a traversing ID would point and
// checks that no operation reads, lists or removes them.
func TestNoPathEscape(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	s, err := fsblob.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("secret")
	victims := []string{
		filepath.Join(root, "x"),
		filepath.Join(dir, "x"),
		filepath.Join(dir, "staging", "x"), // a name too short to be an ID
		filepath.Join(dir, "blobs", "x"),
	}
	for _, v := range victims {
		if err := os.WriteFile(v, secret, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx := t.Context()
	for _, id := range []string{
		"x", "../x", "../../x", "../../../x", "..", "staging/x", "blobs/../x", "./x", "..%2fx", filepath.Join(root, "x"),
	} {
		if _, err := s.Open(ctx, id); ferry.KindOf(err) != ferry.NotFound {
			t.Errorf("Open(%q) = %v, want NotFound", id, err)
		}
		if _, err := s.OpenStaging(ctx, id); ferry.KindOf(err) != ferry.NotFound {
			t.Errorf("OpenStaging(%q) = %v, want NotFound", id, err)
		}
		s.Delete(ctx, id)
		s.RemoveStaging(ctx, id)
	}
	for _, v := range victims {
		if got, err := os.ReadFile(v); err != nil || !bytes.Equal(got, secret) {
			t.Errorf("%s after traversal attempts: %q, %v; want it untouched", v, got, err)
		}
	}
	for name, list := range map[string]func() ([]ferry.BlobInfo, error){
		"List": func() ([]ferry.BlobInfo, error) { return s.List(ctx) }, "ListStaging": func() ([]ferry.BlobInfo, error) { return s.ListStaging(ctx) },
	} {
		infos, err := list()
		if err != nil || len(infos) != 0 {
			t.Errorf("%s = %v, %v; want no entries (stray files are not IDs)", name, infos, err)
		}
	}
}

// TestStagingIsSparse checks that a gap costs no disk space, so a staging
// area for a large file with one fragment at its end stays small.
func TestStagingIsSparse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := fsblob.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Stage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const gap = 1 << 30
	if _, err := st.WriteAt([]byte("end"), gap); err != nil {
		t.Fatal(err)
	}
	if n, _ := st.Size(); n != gap+3 {
		t.Fatalf("Size() = %d, want %d", n, gap+3)
	}
	if used := diskUsage(t, filepath.Join(dir, "staging", st.ID())); used > 1<<20 {
		t.Errorf("a 1 GiB gap uses %d bytes on disk, want a sparse file", used)
	}
}

// TestPublishMovesFile checks that Publish moved the bytes:
// the staging file is gone from disk and the blob is in a shard directory.
func TestPublishMovesFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := fsblob.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Stage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	id := st.ID()
	st.WriteAt([]byte("hello"), 0)
	key, err := st.Publish(t.Context(), 5)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "staging", id)); !os.IsNotExist(err) {
		t.Errorf("staging file after Publish: %v, want it gone", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "blobs", key[:1], key))
	if err != nil || string(got) != "hello" {
		t.Errorf("blob file = %q, %v; want \"hello\"", got, err)
	}
}

// TestOlderLayout opens a store an earlier version made, whose blobs are
// sharded by two characters: its blobs are found, listed and deleted, and
// new ones join that layout rather than start a second one.
func TestOlderLayout(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "data")
	const old = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	if err := os.MkdirAll(filepath.Join(dir, "blobs", old[:2]), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "blobs", old[:2], old), []byte("older"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := fsblob.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Open(ctx, old)
	if err != nil {
		t.Fatalf("Open of a blob in the older layout: %v", err)
	}
	b.Close()
	st, err := s.Stage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.WriteAt([]byte("newer"), 0)
	key, err := st.Publish(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs", key[:2], key)); err != nil {
		t.Errorf("new blob in the older store: %v, want it under a two-character shard", err)
	}
	infos, err := s.List(ctx)
	if err != nil || len(infos) != 2 {
		t.Errorf("List = %v, %v; want both blobs", infos, err)
	}
	if err := s.Delete(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, old); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("Open after Delete = %v, want NotFound", err)
	}
}

func TestPublishAfterRemoveStaging(t *testing.T) {
	s := newStore(t)
	st, err := s.Stage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	st.WriteAt([]byte("gone"), 0)
	if err := s.RemoveStaging(t.Context(), st.ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Publish(t.Context(), 4); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("Publish of a removed area: %v, want NotFound", err)
	}
	if infos, _ := s.List(t.Context()); len(infos) != 0 {
		t.Errorf("List = %v, want nothing", infos)
	}
}
