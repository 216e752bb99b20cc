package blob

import (
	"context"
	"fmt"
	"io"

	"github.com/ferrydrive/ferry"
)

// Rehash re-reads the staged bytes [0,n) of s and returns a Hasher that has
// absorbed them, for resuming a transfer whose hash state was not saved.
func Rehash(ctx context.Context, s ferry.Staging, n int64) (*Hasher, error) {
	h := NewHasher()
	if err := hashRange(ctx, s, s.ID(), h, 0, n); err != nil {
		return nil, err
	}
	return h, nil
}

// hashRange feeds the bytes [from, to) of s (a staging area or a blob,
// named id in errors) to h.
func hashRange(ctx context.Context, s io.ReaderAt, id string, h *Hasher, from, to int64) error {
	sh := newSplitHasher(h)
	defer sh.Close()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for off := from; off < to; {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := buf[:min(int64(len(buf)), to-off)]
		k, err := s.ReadAt(p, off)
		sh.Write(p[:k])
		off += int64(k)
		if err == io.EOF && off < to {
			return fmt.Errorf("blob: rehash %s: %d bytes staged, want %d", id, off, to)
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("blob: rehash %s: %w", id, err)
		}
	}
	return nil
}

// sniffLen is how many leading bytes http.DetectContentType considers.
const sniffLen = 512

// headWriter keeps the first sniffLen bytes written to it.
type headWriter struct{ head []byte }

func (w *headWriter) Write(p []byte) (int, error) {
	if k := sniffLen - len(w.head); k > 0 {
		w.head = append(w.head, p[:min(k, len(p))]...)
	}
	return len(p), nil
}

// Ingest stores all of src as a new blob: it stages the bytes, hashing
// them on the way, and publishes them. limit is as for Copy (its error
// wraps ErrLimit; see OverQuota). Content.MimeType is sniffed from the
// first bytes; a caller that knows the file name should prefer
// DetectMIME(name, nil) when that gives something more specific than
// application/octet-stream. On any error nothing is left behind: the
// staging area is removed.
func Ingest(ctx context.Context, store ferry.BlobStore, src io.Reader, limit int64) (c ferry.Content, err error) {
	st, err := store.Stage(ctx)
	if err != nil {
		return ferry.Content{}, err
	}
	published := false
	defer func() {
		if !published {
			st.Close()
			// Removal must happen even when ctx is what failed.
			store.RemoveStaging(context.WithoutCancel(ctx), st.ID())
		}
	}()

	head := &headWriter{head: make([]byte, 0, sniffLen)}
	h := NewHasher()
	n, err := Copy(ctx, st, 0, io.TeeReader(src, head), h, limit, nil)
	if err != nil {
		return ferry.Content{}, err
	}
	key, err := st.Publish(ctx, n)
	if err != nil {
		return ferry.Content{}, err
	}
	published = true
	return ferry.Content{Size: n, MimeType: DetectMIME("", head.head), Hashes: h.Sum(), BlobKey: key}, nil
}
