package graph

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydrive/ferry"
)

// signer makes and checks download tokens: base64url(expiry ‖ item id ‖
// HMAC-SHA256(key, expiry ‖ item id)). A token names an item, not a blob,
// so it serves the item's current bytes until it expires.
type signer struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

const tokenDomain = "ferry download v1\n" // keeps these MACs apart from any other use of the key

func (s *signer) mac(payload []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(tokenDomain))
	m.Write(payload)
	return m.Sum(nil)
}

// token returns a download token for id, valid for the signer's TTL.
func (s *signer) token(id ferry.ItemID) string {
	payload := binary.BigEndian.AppendUint64(nil, uint64(s.now().Add(s.ttl).Unix()))
	payload = append(payload, id...)
	return base64.RawURLEncoding.EncodeToString(append(payload, s.mac(payload)...))
}

// verify returns the item id of a genuine, unexpired token.
func (s *signer) verify(token string) (ferry.ItemID, bool) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 8+1+sha256.Size {
		return "", false
	}
	payload, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if !hmac.Equal(sum, s.mac(payload)) {
		return "", false
	}
	expiry := int64(binary.BigEndian.Uint64(payload[:8]))
	if s.now().Unix() >= expiry {
		return "", false
	}
	return ferry.ItemID(payload[8:]), true
}

// downloadURL is the item's pre-authenticated URL.
func downloadURL(r *http.Request, urls *urlBuilder, sign *signer, id ferry.ItemID) string {
	return urls.abs(r, "/download/"+sign.token(id))
}

// presigner is a blob store that can hand out a short-lived URL of its
// own for a blob (s3blob with --s3-presign); ok is false when it was not
// asked to. The URL is a credential: it is never logged.
type presigner interface {
	DownloadURL(ctx context.Context, key, disposition, contentType string) (url string, ok bool, err error)
}

// handleDownload serves a file's bytes at its download URL. The token is
// the only credential: an Authorization header is ignored. A forged,
// expired or dangling token is 404 itemNotFound, like an item that does not
// exist (401 would invite clients to attach a token that cannot help).
// Single ranges get 206 (416 when unsatisfiable); a request for several
// ranges gets the whole file with 200, which RFC 9110 allows.
func handleDownload(log *slog.Logger, items ferry.ItemStore, blobs ferry.BlobStore, sign *signer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := sign.verify(r.PathValue("token"))
		if !ok {
			writeError(w, r, log, ferry.Errorf(ferry.NotFound, "the download URL is not valid or has expired"))
			return
		}
		it, err := items.Item(r.Context(), id)
		if err == nil && it.Folder {
			err = ferry.Errorf(ferry.NotFound, "the item is a folder")
		}
		if err != nil {
			if ferry.KindOf(err) == ferry.NotFound {
				err = ferry.Errorf(ferry.NotFound, "the item no longer exists")
			}
			writeError(w, r, log, err)
			return
		}
		if p, ok := blobs.(presigner); ok && r.Method == http.MethodGet && r.Header.Get("If-Range") == "" &&
			!(r.Header.Get("If-None-Match") != "" && it.Matches(r.Header.Get("If-None-Match"))) {
			// The object store serves the bytes (and a Range) itself. A
			// request with If-Range stays here: only Ferry knows the
			// validator it names.
			mime := it.MimeType
			if mime == "" {
				mime = "application/octet-stream"
			}
			u, ok, err := p.DownloadURL(r.Context(), it.BlobKey, contentDisposition(it.Name), mime)
			if err != nil {
				writeError(w, r, log, err)
				return
			}
			if ok {
				w.Header().Set("Cache-Control", "no-store")
				http.Redirect(w, r, u, http.StatusFound)
				return
			}
		}
		b, err := blobs.Open(r.Context(), it.BlobKey)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		defer b.Close()
		size := b.Size()

		h := w.Header()
		h.Set("ETag", it.CTag())
		h.Set("Last-Modified", it.Modified.UTC().Format(http.TimeFormat))
		h.Set("Accept-Ranges", "bytes")
		h.Set("Cache-Control", "private, no-cache")
		h.Set("Content-Disposition", contentDisposition(it.Name))
		if inm := r.Header.Get("If-None-Match"); inm != "" && it.Matches(inm) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		mime := it.MimeType
		if mime == "" {
			mime = "application/octet-stream"
		}
		h.Set("Content-Type", mime)

		start, length, status := int64(0), size, http.StatusOK
		if rh := r.Header.Get("Range"); rh != "" && ifRangeHolds(r.Header.Get("If-Range"), it) {
			br, ok, err := parseRange(rh, size)
			switch {
			case err != nil:
				h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
				h.Del("Content-Disposition")
				writeError(w, r, log, err)
				return
			case ok:
				start, length, status = br.start, br.length, http.StatusPartialContent
				h.Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+
					strconv.FormatInt(start+length-1, 10)+"/"+strconv.FormatInt(size, 10))
			}
		}
		h.Set("Content-Length", strconv.FormatInt(length, 10))
		w.WriteHeader(status)
		if r.Method == http.MethodHead || length == 0 {
			return
		}
		if _, err := io.Copy(w, io.NewSectionReader(b, start, length)); err != nil {
			// The status is out; all we can do is note it and cut the stream.
			log.DebugContext(r.Context(), "download interrupted", "err", err, "request_id", requestID(r))
		}
	})
}

// ifRangeHolds reports whether a Range may be honoured under If-Range: no
// If-Range, an entity tag strongly equal to the item's cTag or eTag, or a
// date not before the item's last change.
func ifRangeHolds(ifRange string, it *ferry.Item) bool {
	ifRange = strings.TrimSpace(ifRange)
	switch {
	case ifRange == "":
		return true
	case strings.HasPrefix(ifRange, `"`):
		return ifRange == it.CTag() || ifRange == it.ETag()
	case strings.HasPrefix(ifRange, "W/"):
		return false // weak tags never match under If-Range
	}
	t, err := http.ParseTime(ifRange)
	return err == nil && !it.Modified.Truncate(time.Second).After(t)
}

// contentDisposition offers the file for saving under its own name: a
// plain ASCII fallback and the exact UTF-8 name (RFC 6266, RFC 8187).
func contentDisposition(name string) string {
	var ascii strings.Builder
	for _, r := range name {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' || r == '%' {
			ascii.WriteByte('_')
			continue
		}
		ascii.WriteRune(r)
	}
	return `attachment; filename="` + ascii.String() + `"; filename*=UTF-8''` + escapeRFC8187(name)
}

// escapeRFC8187 percent-encodes everything but RFC 8187's attr-char.
func escapeRFC8187(s string) string {
	const attrChar = "!#$&+-.^_`|~"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(attrChar, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteString(url.PathEscape(string([]byte{c})))
	}
	return b.String()
}

// byteRange is one satisfiable range of a representation.
type byteRange struct{ start, length int64 }

// parseRange parses a Range header for a representation of size bytes. It
// returns ok for one satisfiable range, !ok with a nil error when the
// header is to be ignored (not a bytes range, malformed, or several
// ranges: the whole file is served), and an InvalidRange error when the
// range cannot be satisfied (416).
func parseRange(h string, size int64) (byteRange, bool, error) {
	unit, spec, found := strings.Cut(strings.TrimSpace(h), "=")
	if !found || !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		return byteRange{}, false, nil
	}
	spec = strings.TrimSpace(spec)
	if spec == "" || strings.Contains(spec, ",") {
		return byteRange{}, false, nil
	}
	first, last, found := strings.Cut(spec, "-")
	if !found {
		return byteRange{}, false, nil
	}
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)
	unsatisfiable := ferry.Errorf(ferry.InvalidRange, "the range %q cannot be satisfied for %d bytes", spec, size)
	if first == "" { // suffix: the last n bytes
		n, ok := parseDigits(last)
		if !ok {
			return byteRange{}, false, nil
		}
		if n == 0 || size == 0 {
			return byteRange{}, false, unsatisfiable
		}
		n = min(n, size)
		return byteRange{start: size - n, length: n}, true, nil
	}
	a, ok := parseDigits(first)
	if !ok {
		return byteRange{}, false, nil
	}
	end := size - 1
	if last != "" {
		b, ok := parseDigits(last)
		if !ok || b < a {
			return byteRange{}, false, nil
		}
		end = min(b, size-1)
	}
	if a >= size {
		return byteRange{}, false, unsatisfiable
	}
	return byteRange{start: a, length: end - a + 1}, true, nil
}

// parseDigits parses a non-empty run of ASCII digits that fits an int64.
func parseDigits(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}
