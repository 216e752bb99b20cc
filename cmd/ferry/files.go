package main

// The file commands: ls, get, put, mkdir, rm, mv. Each takes absolute drive
// paths ("/Downloads/a.txt"; a missing leading slash is added).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// wantArgs checks the number of positional arguments.
func wantArgs(rest []string, lo, hi int, what string) error {
	switch {
	case len(rest) < lo:
		return usageError{"give " + what}
	case len(rest) > hi:
		return usageError{fmt.Sprintf("unexpected argument %q", rest[hi])}
	}
	return nil
}

func runLs(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, o := newClientFlags("ls", "ferry ls [PATH] [--json]   (PATH defaults to /)", stderr)
	asJSON := fs.Bool("json", false, "print the Graph items as a JSON array")
	pageSize := fs.Int("page-size", 200, "items asked for per request (1 to 1000); every page is listed")
	rest, err := parseClientFlags(fs, args, getenv)
	if err != nil {
		return err
	}
	if err := wantArgs(rest, 0, 1, "a PATH"); err != nil {
		return err
	}
	if *pageSize < 1 || *pageSize > 1000 {
		return usageError{"--page-size must be from 1 to 1000"}
	}
	p := "/"
	if len(rest) == 1 {
		p = rest[0]
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	it, err := c.stat(ctx, p)
	if err != nil {
		return err
	}
	var raw []json.RawMessage
	if !it.isFolder() { // like ls(1): a file lists itself
		var one json.RawMessage
		if _, err := c.call(ctx, http.MethodGet, itemIDURL(it.ID, ""), nil, &one); err != nil {
			return c.explain(err, "")
		}
		raw = append(raw, one)
	} else {
		next := itemIDURL(it.ID, "children") + "?$top=" + strconv.Itoa(*pageSize)
		for next != "" {
			var page struct {
				Value    []json.RawMessage `json:"value"`
				NextLink string            `json:"@odata.nextLink"`
			}
			if _, err := c.call(ctx, http.MethodGet, next, nil, &page); err != nil {
				return c.explain(err, "")
			}
			raw = append(raw, page.Value...)
			next = c.nextLink(page.NextLink)
		}
	}
	if *asJSON {
		if raw == nil {
			raw = []json.RawMessage{}
		}
		b, _ := json.MarshalIndent(raw, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return nil
	}
	type row struct{ kind, size, when, name string }
	rows := make([]row, 0, len(raw))
	sizeWidth := 0
	for _, r := range raw {
		var child item
		if err := json.Unmarshal(r, &child); err != nil {
			return fmt.Errorf("the server at %s sent an item this ferry cannot read", c.base)
		}
		x := row{"file", humanSize(child.Size), child.LastModifiedDateTime.Local().Format("2006-01-02 15:04"), child.Name}
		if child.isFolder() {
			x.kind, x.name = "folder", child.Name+"/"
		}
		sizeWidth = max(sizeWidth, len(x.size))
		rows = append(rows, x)
	}
	for _, x := range rows {
		fmt.Fprintf(stdout, "%-6s  %*s  %s  %s\n", x.kind, sizeWidth, x.size, x.when, x.name)
	}
	return nil
}

// humanSize prints a byte count the way people read it: 512 B, 1.5 MiB.
func humanSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n), 0
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}
	for v /= 1024; v >= 1024 && unit < len(units)-1; v /= 1024 {
		unit++
	}
	return fmt.Sprintf("%.1f %s", v, units[unit])
}

func runGet(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, o := newClientFlags("get", "ferry get PATH [FILE | DIR | -] [--force]   (default: the item's name in the current directory)", stderr)
	force := fs.Bool("force", false, "overwrite FILE if it exists")
	progress := registerProgress(fs)
	rest, err := parseClientFlags(fs, args, getenv)
	if err != nil {
		return err
	}
	if err := wantArgs(rest, 1, 2, "the drive PATH to download"); err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	it, err := c.stat(ctx, rest[0])
	if err != nil {
		return err
	}
	if it.isFolder() {
		return fmt.Errorf("%s is a folder; ferry get downloads files (ferry ls lists it)", cleanPath(rest[0]))
	}
	dest := it.Name
	if len(rest) == 2 {
		dest = rest[1]
		if fi, err := os.Stat(dest); err == nil && fi.IsDir() {
			dest = filepath.Join(dest, it.Name)
		}
	}

	resp, err := c.send(ctx, http.MethodGet, itemIDURL(it.ID, "content"), nil, nil)
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			return fmt.Errorf("%s does not exist", cleanPath(rest[0]))
		}
		return c.explain(err, "")
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the server answered HTTP %d to a download", resp.StatusCode)
	}
	bs := newBars(ctx, stderr, *progress)
	b := bs.add(it.Name, it.Size, false)
	body := io.Reader(resp.Body)
	if b != nil {
		body = &countingReader{r: resp.Body, fn: func(n int64) { b.set(n, it.Size) }}
	}
	if dest == "-" {
		_, err = io.Copy(stdout, body)
		b.finish(err == nil)
		bs.wait()
		if err != nil {
			return fmt.Errorf("the download of %s broke off: %s", cleanPath(rest[0]), plainNetError(err))
		}
		return nil
	}
	err = writeFileAtomic(dest, *force, func(f *os.File) error {
		n, err := io.Copy(f, body)
		if err == nil && n != it.Size && resp.ContentLength < 0 {
			err = fmt.Errorf("got %d of %d bytes", n, it.Size)
		}
		return err
	})
	b.finish(err == nil)
	bs.wait()
	if err != nil {
		var exists existsError
		if errors.As(err, &exists) {
			return err
		}
		return fmt.Errorf("the download of %s to %s failed: %s", cleanPath(rest[0]), dest, plainNetError(err))
	}
	fmt.Fprintln(stdout, dest)
	return nil
}

type existsError struct{ name string }

func (e existsError) Error() string {
	return e.name + " exists; give --force to overwrite it, or name another FILE"
}

// writeFileAtomic writes a file next to name and renames it into place only
// when fill succeeds, so that a broken download leaves no half-written file.
// Without force an existing name is refused.
func writeFileAtomic(name string, force bool, fill func(*os.File) error) error {
	mode := fs.FileMode(0o644) // CreateTemp makes 0600; a download is an ordinary file
	if fi, err := os.Lstat(name); err == nil {
		if !force {
			return existsError{name}
		}
		mode = fi.Mode().Perm() // replacing keeps the old file's mode
	}
	dir, base := filepath.Dir(name), filepath.Base(name)
	f, err := os.CreateTemp(dir, "."+base+".ferry-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("cannot write in %s: %s", dir, err)
	}
	defer os.Remove(f.Name()) // fails harmlessly after the rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return plainFSError(err)
	}
	if err := fill(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return plainFSError(err)
	}
	if !force {
		// Link fails if the name appeared meanwhile; rename would replace it.
		if err := os.Link(f.Name(), name); err == nil {
			return nil
		} else if errors.Is(err, fs.ErrExist) {
			return existsError{name}
		}
	}
	if err := os.Rename(f.Name(), name); err != nil {
		return plainFSError(err)
	}
	return nil
}

// plainFSError drops the Go operation prefix of a file system error.
func plainFSError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %s", pe.Path, pe.Err)
	}
	return err
}

// plainNetError words a broken transfer without the Go chain.
func plainNetError(err error) string {
	var u unreachableError
	switch {
	case errors.As(err, &u):
		return u.Error()
	case errors.Is(err, context.Canceled):
		return "interrupted"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection closed early"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return "the connection broke (" + ue.Err.Error() + ")"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Path + ": " + pe.Err.Error()
	}
	return err.Error()
}

type countingReader struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.fn(c.n)
	return n, err
}

func runMkdir(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, o := newClientFlags("mkdir", "ferry mkdir PATH… [-p]", stderr)
	var parents bool
	fs.BoolVar(&parents, "parents", false, "create missing parent folders too, and accept folders that exist")
	fs.BoolVar(&parents, "p", false, "short for --parents")
	rest, err := parseClientFlags(fs, args, getenv)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return usageError{"give the PATH of the folder to create"}
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	for _, p := range rest {
		var created []string
		if parents {
			_, created, err = c.mkdirAll(ctx, p)
		} else {
			var f *item
			f, err = c.mkdir(ctx, p)
			if f != nil {
				created = []string{cleanPath(p)}
			}
		}
		for _, p := range created {
			fmt.Fprintln(stdout, p)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// mkdir creates the folder p in its existing parent.
func (c *apiClient) mkdir(ctx context.Context, p string) (*item, error) {
	p = cleanPath(p)
	if p == "/" {
		return nil, errors.New("/ exists already")
	}
	parent, err := c.folder(ctx, path.Dir(p))
	if err != nil {
		return nil, err
	}
	return c.createFolder(ctx, parent, p)
}

// createFolder creates folder p (whose parent is parent).
func (c *apiClient) createFolder(ctx context.Context, parent *item, p string) (*item, error) {
	name := path.Base(p)
	body := map[string]any{"name": name, "folder": map[string]any{}, "@microsoft.graph.conflictBehavior": "fail"}
	var it item
	if _, err := c.call(ctx, http.MethodPost, itemIDURL(parent.ID, "children"), body, &it); err != nil {
		if statusOf(err) == http.StatusConflict {
			return nil, fmt.Errorf("%s already exists", p)
		}
		return nil, c.explain(err, path.Dir(p))
	}
	return &it, nil
}

// mkdirAll returns the folder p, creating it and its missing parents, and
// the paths it created.
func (c *apiClient) mkdirAll(ctx context.Context, p string) (*item, []string, error) {
	p = cleanPath(p)
	it, err := c.lookup(ctx, p)
	switch {
	case err != nil:
		return nil, nil, err
	case it != nil && it.isFolder():
		return it, nil, nil
	case it != nil:
		return nil, nil, fmt.Errorf("%s is a file, not a folder", p)
	}
	parent, created, err := c.mkdirAll(ctx, path.Dir(p))
	if err != nil {
		return nil, created, err
	}
	it, err = c.createFolder(ctx, parent, p)
	if err != nil {
		// Someone else may have made it meanwhile.
		if again, _ := c.lookup(ctx, p); again != nil && again.isFolder() {
			return again, created, nil
		}
		return nil, created, err
	}
	return it, append(created, p), nil
}

func runRm(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, o := newClientFlags("rm", "ferry rm PATH…   (folders are removed with everything in them)", stderr)
	rest, err := parseClientFlags(fs, args, getenv)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return usageError{"give the PATH to remove"}
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	for _, p := range rest {
		p = cleanPath(p)
		if p == "/" {
			return errors.New("the root folder / cannot be removed")
		}
		it, err := c.stat(ctx, p)
		if err != nil {
			return err
		}
		if _, err := c.call(ctx, http.MethodDelete, itemIDURL(it.ID, ""), nil, nil); err != nil {
			if statusOf(err) == http.StatusNotFound {
				return fmt.Errorf("%s does not exist", p)
			}
			return c.explain(err, "")
		}
		switch {
		case !it.isFolder():
			fmt.Fprintf(stdout, "removed %s (%s)\n", p, humanSize(it.Size))
		case it.Folder.ChildCount == 0:
			fmt.Fprintf(stdout, "removed folder %s (empty)\n", p)
		default:
			fmt.Fprintf(stdout, "removed folder %s and everything in it (%s)\n", p, humanSize(it.Size))
		}
	}
	return nil
}

func runMv(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, o := newClientFlags("mv", "ferry mv SRC DST   (DST an existing folder: move into it; otherwise the new path)", stderr)
	force := fs.Bool("force", false, "replace a file that has the new name")
	rest, err := parseClientFlags(fs, args, getenv)
	if err != nil {
		return err
	}
	if err := wantArgs(rest, 2, 2, "SRC and DST"); err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	src, dst := cleanPath(rest[0]), cleanPath(rest[1])
	if src == "/" {
		return errors.New("the root folder / cannot be moved")
	}
	it, err := c.stat(ctx, src)
	if err != nil {
		return err
	}
	// DST is an existing folder: into it. Otherwise DST names the item's
	// new path, in an existing folder.
	folder, name := path.Dir(dst), path.Base(dst)
	target, err := c.lookup(ctx, dst)
	if err != nil {
		return err
	}
	intoDir := strings.HasSuffix(rest[1], "/") || dst == "/"
	switch {
	case target != nil && target.isFolder() && target.ID != it.ID:
		folder, name = dst, it.Name
	case intoDir:
		return fmt.Errorf("folder %s does not exist", dst)
	}
	parent, err := c.folder(ctx, folder)
	if err != nil {
		return err
	}
	newPath := path.Join(folder, name)
	if newPath == src {
		return fmt.Errorf("%s is already there", src)
	}
	body := map[string]any{}
	if name != it.Name {
		body["name"] = name
	}
	if parent.ID != it.ParentReference.ID {
		body["parentReference"] = map[string]any{"id": parent.ID}
	}
	if *force {
		body["@microsoft.graph.conflictBehavior"] = "replace"
	}
	var moved item
	if _, err := c.call(ctx, http.MethodPatch, itemIDURL(it.ID, ""), body, &moved); err != nil {
		if statusOf(err) == http.StatusConflict {
			return fmt.Errorf("name %s is already taken in %s (give --force to replace a file)", name, folder)
		}
		if e := (*apiError)(nil); errors.As(err, &e) && e.Status == http.StatusBadRequest && e.Message != "" {
			return fmt.Errorf("cannot move %s to %s: %s", src, newPath, e.Message)
		}
		return c.explain(err, folder)
	}
	fmt.Fprintf(stdout, "%s -> %s\n", src, moved.drivePath())
	return nil
}
