package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	// simplePutMax is the largest file sent in one PUT; larger ones go
	// through an upload session, which survives a broken connection.
	// Graph advises sessions above 4 MB.
	simplePutMax = 4 << 20
	// fragmentUnit: Graph wants fragments in multiples of 320 KiB.
	fragmentUnit     = 320 << 10
	maxFragment      = 60 << 20 // Graph's cap on one fragment
	fragmentAttempts = 8        // tries of one fragment through transient errors (about 25 s)
)

func runPut(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, o := newClientFlags("put", "ferry put FILE PATH [--force]   (PATH an existing folder or ending in /: into it, keeping FILE's name)", stderr)
	force := fs.Bool("force", false, "replace a file that has the same name")
	fragment := int64(10 << 20)
	fs.Var(sizeValue{&fragment}, "fragment-size", "bytes per upload-session fragment, a multiple of 320KiB (files above 4MiB use sessions)")
	progress := registerProgress(fs)
	rest, err := parseClientFlags(fs, args, getenv)
	if err != nil {
		return err
	}
	if err := wantArgs(rest, 2, 2, "the local FILE and the drive PATH"); err != nil {
		return err
	}
	if fragment%fragmentUnit != 0 || fragment > maxFragment {
		return usageError{"--fragment-size must be a multiple of 320KiB, at most 60MiB"}
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	local, dst := rest[0], cleanPath(rest[1])
	f, err := os.Open(local)
	if err != nil {
		return plainFSError(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return plainFSError(err)
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a folder; ferry put uploads one file", local)
	}

	// Where to: into an existing folder, or as a new name in one.
	folder, name := path.Dir(dst), path.Base(dst)
	target, err := c.lookup(ctx, dst)
	if err != nil {
		return err
	}
	switch {
	case target != nil && target.isFolder():
		folder, name = dst, filepath.Base(local)
	case strings.HasSuffix(rest[1], "/"):
		return fmt.Errorf("folder %s does not exist", dst)
	}
	parent, err := c.folder(ctx, folder)
	if err != nil {
		return err
	}
	conflict := "fail"
	if *force {
		conflict = "replace"
	}
	u := &upload{c: c, f: f, size: fi.Size(), parent: parent, folder: folder, name: name, conflict: conflict}
	var it *item
	if u.size <= simplePutMax {
		it, err = u.simple(ctx)
	} else {
		bs := newBars(ctx, stderr, *progress)
		b := bs.add(name, u.size, false)
		it, err = u.session(ctx, fragment, b)
		b.finish(err == nil)
		bs.wait()
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, it.drivePath())
	return nil
}

// upload is one file on its way to folder/name.
type upload struct {
	c        *apiClient
	f        *os.File
	size     int64
	parent   *item
	folder   string
	name     string
	conflict string
}

// target is the API address of the new file, by its parent's id.
func (u *upload) target(action string) string {
	return itemIDURL(u.parent.ID, "") + ":/" + escapePath(u.name) + ":/" + action
}

// explain words an error of the upload for the user.
func (u *upload) explain(err error) error {
	switch statusOf(err) {
	case http.StatusConflict:
		return fmt.Errorf("name %s is already taken in %s (give --force to replace it)", u.name, u.folder)
	case http.StatusNotFound:
		return fmt.Errorf("folder %s does not exist", u.folder)
	}
	var e *apiError
	if errors.As(err, &e) && e.Status == http.StatusBadRequest && e.Message != "" {
		return fmt.Errorf("cannot upload %s: %s", path.Join(u.folder, u.name), e.Message)
	}
	if errors.As(err, &e) && e.Status == http.StatusRequestEntityTooLarge {
		return fmt.Errorf("the server refused %s as too large: %s", path.Join(u.folder, u.name), e.Message)
	}
	return u.c.explain(err, u.folder)
}

// simple sends the whole file in one PUT.
func (u *upload) simple(ctx context.Context) (*item, error) {
	q := "?@microsoft.graph.conflictBehavior=" + u.conflict
	resp, err := u.c.send(ctx, http.MethodPut, u.target("content")+q, io.NewSectionReader(u.f, 0, u.size),
		http.Header{"Content-Type": {"application/octet-stream"}})
	if err != nil {
		return nil, u.explain(err)
	}
	defer resp.Body.Close()
	return decodeItem(u.c, resp)
}

func decodeItem(c *apiClient, resp *http.Response) (*item, error) {
	var it item
	if err := jsonDecode(resp.Body, &it); err != nil || it.ID == "" {
		return nil, fmt.Errorf("the server at %s answered an upload with something this ferry cannot read", c.base)
	}
	return &it, nil
}

// sessionStatus is what an upload URL answers while bytes are missing.
type sessionStatus struct {
	UploadURL          string   `json:"uploadUrl"`
	NextExpectedRanges []string `json:"nextExpectedRanges"`
}

// next is the first byte the server still expects, or -1 for none.
func (s *sessionStatus) next() int64 {
	if len(s.NextExpectedRanges) == 0 {
		return -1
	}
	first, _, _ := strings.Cut(s.NextExpectedRanges[0], "-")
	n, err := strconv.ParseInt(first, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// session sends the file through an upload session in fragments. A
// fragment that meets a transient error (no answer, 5xx, 429, a broken
// body) is not given up: after a pause the session's status says which
// bytes the server still wants, and the upload goes on from there.
func (u *upload) session(ctx context.Context, fragment int64, b *bar) (it *item, err error) {
	body := map[string]any{"item": map[string]any{
		"@microsoft.graph.conflictBehavior": u.conflict,
		"fileSize":                          u.size,
	}}
	var st sessionStatus
	if _, err := u.c.call(ctx, http.MethodPost, u.target("createUploadSession"), body, &st); err != nil {
		return nil, u.explain(err)
	}
	if st.UploadURL == "" {
		return nil, fmt.Errorf("the server at %s made an upload session without an upload URL", u.c.base)
	}
	defer func() {
		if err != nil { // free the staged bytes; the session is useless now
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if resp, derr := u.c.send(dctx, http.MethodDelete, st.UploadURL, nil, nil); derr == nil {
				resp.Body.Close()
			}
		}
	}()

	offset, failures := int64(0), 0
	for {
		b.set(offset, u.size)
		var resp *http.Response
		if offset < 0 { // every byte is there but the commit did not happen
			resp, err = u.c.send(ctx, http.MethodPost, st.UploadURL, nil, nil)
		} else {
			end := min(offset+fragment, u.size)
			resp, err = u.c.send(ctx, http.MethodPut, st.UploadURL, io.NewSectionReader(u.f, offset, end-offset), http.Header{
				"Content-Range": {fmt.Sprintf("bytes %d-%d/%d", offset, end-1, u.size)},
			})
		}
		if err == nil {
			failures = 0
			if resp.StatusCode == http.StatusAccepted {
				var next sessionStatus
				derr := jsonDecode(resp.Body, &next)
				resp.Body.Close()
				if derr != nil {
					return nil, fmt.Errorf("the server at %s answered a fragment with something this ferry cannot read", u.c.base)
				}
				offset = next.next()
				continue
			}
			defer resp.Body.Close()
			return decodeItem(u.c, resp)
		}
		if ctx.Err() != nil {
			return nil, errors.New("interrupted; the upload was cancelled")
		}
		resync := statusOf(err) == http.StatusRequestedRangeNotSatisfiable || statusOf(err) == http.StatusBadRequest && strings.Contains(err.Error(), "send the fragment again")
		if !transient(err) && !resync {
			return nil, u.explain(err)
		}
		if failures++; failures >= fragmentAttempts {
			return nil, fmt.Errorf("the upload of %s gave up after %d tries: %s", path.Join(u.folder, u.name), failures, plainNetError(u.explain(err)))
		}
		pause := min(time.Duration(1<<(failures-1))*250*time.Millisecond, 8*time.Second)
		if e := (*apiError)(nil); errors.As(err, &e) && e.RetryAfter > 0 {
			pause = e.RetryAfter
		}
		select {
		case <-ctx.Done():
			return nil, errors.New("interrupted; the upload was cancelled")
		case <-time.After(pause):
		}
		// Ask the server where to go on: the failed fragment may have
		// arrived after all, or only in part.
		var now sessionStatus
		if _, serr := u.c.call(ctx, http.MethodGet, st.UploadURL, nil, &now); serr != nil {
			if statusOf(serr) == http.StatusNotFound {
				return nil, errors.New("the upload session expired or was cancelled on the server; run ferry put again")
			}
			continue // try the same fragment again; this counts as a failure next time round
		}
		offset = now.next()
	}
}

func jsonDecode(r io.Reader, v any) error {
	return json.NewDecoder(io.LimitReader(r, 16<<20)).Decode(v)
}
