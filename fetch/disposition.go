package fetch

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// dispositionFilename returns the file name a Content-Disposition header
// suggests, reduced to a bare name: filename* (RFC 6266 with RFC 5987
// encoding: UTF-8 or ISO-8859-1) wins over filename; the result has no
// directory parts, no control characters, and is never "." or "..". It is
// deliberately lenient, like browsers: unquoted values may contain spaces,
// and a value that cannot be decoded is skipped rather than failing. Names
// may still hold characters a drive forbids; the caller applies its own
// naming rules.
func dispositionFilename(v string) string {
	if v == "" {
		return ""
	}
	var plain, ext string
	var haveExt bool
	// Skip the disposition type ("attachment", "inline"); parameters follow.
	_, rest, _ := strings.Cut(v, ";")
	for rest != "" {
		var key, val string
		key, val, rest = nextParam(rest)
		switch strings.ToLower(key) {
		case "filename":
			if plain == "" {
				plain = val
			}
		case "filename*":
			if !haveExt {
				if s, ok := decodeExtValue(val); ok {
					ext, haveExt = s, true
				}
			}
		}
	}
	name := plain
	if haveExt {
		name = ext
	} else if !utf8.ValidString(name) {
		name = latin1(name) // some servers send raw ISO-8859-1 bytes
	}
	return sanitizeFilename(name)
}

// nextParam reads one "key=value" from s (which follows a ';') and returns
// the rest after the next ';'. Quoted values may contain ';' and
// backslash escapes.
func nextParam(s string) (key, val, rest string) {
	s = strings.TrimLeft(s, " \t;")
	eq := strings.IndexAny(s, "=;")
	if eq < 0 || s[eq] == ';' {
		if eq < 0 {
			return strings.TrimSpace(s), "", ""
		}
		return strings.TrimSpace(s[:eq]), "", s[eq+1:]
	}
	key = strings.TrimSpace(s[:eq])
	s = strings.TrimLeft(s[eq+1:], " \t")
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		i := 1
		for ; i < len(s); i++ {
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				i++
				b.WriteByte(s[i])
				continue
			}
			if c == '"' {
				break
			}
			b.WriteByte(c)
		}
		rest = s[min(i+1, len(s)):]
		if j := strings.IndexByte(rest, ';'); j >= 0 {
			rest = rest[j+1:]
		} else {
			rest = ""
		}
		return key, b.String(), rest
	}
	if j := strings.IndexByte(s, ';'); j >= 0 {
		return key, strings.TrimSpace(s[:j]), s[j+1:]
	}
	return key, strings.TrimSpace(s), ""
}

// decodeExtValue decodes an RFC 5987 ext-value: charset'language'pct-encoded.
func decodeExtValue(v string) (string, bool) {
	charset, rest, ok := strings.Cut(v, "'")
	if !ok {
		return "", false
	}
	_, enc, ok := strings.Cut(rest, "'")
	if !ok {
		return "", false
	}
	raw := make([]byte, 0, len(enc))
	for i := 0; i < len(enc); i++ {
		c := enc[i]
		if c != '%' {
			raw = append(raw, c)
			continue
		}
		if i+2 >= len(enc) {
			return "", false
		}
		hi, ok1 := unhex(enc[i+1])
		lo, ok2 := unhex(enc[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		raw = append(raw, hi<<4|lo)
		i += 2
	}
	switch strings.ToLower(strings.TrimSpace(charset)) {
	case "utf-8":
		if !utf8.Valid(raw) {
			return "", false
		}
		return string(raw), true
	case "iso-8859-1":
		return latin1(string(raw)), true
	case "us-ascii":
		for _, c := range raw {
			if c >= 0x80 {
				return "", false
			}
		}
		return string(raw), true
	}
	return "", false
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// latin1 reads s as ISO-8859-1 bytes.
func latin1(s string) string {
	rs := make([]rune, len(s))
	for i := range len(s) {
		rs[i] = rune(s[i])
	}
	return string(rs)
}

// sanitizeFilename keeps the last path element (either slash counts as a
// separator), drops control and format characters, and trims spaces. It
// returns "" for names that are empty, ".", or "..".
func sanitizeFilename(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	if name == "." || name == ".." {
		return ""
	}
	return name
}
