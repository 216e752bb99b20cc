package graph

import (
	"net/http"
	"strings"
)

// prefers reports whether the request's Prefer headers (RFC 7240) name the
// preference want, case-insensitively. Prefer is a comma-separated list of
// `token [= value] *( ";" param )`, possibly spread over several header
// lines; quoted values may contain commas and semicolons.
func prefers(h http.Header, want string) bool {
	for _, line := range h.Values("Prefer") {
		for _, pref := range splitQuoted(line, ',') {
			name := splitQuoted(pref, ';')[0]
			name, _, _ = strings.Cut(name, "=")
			if strings.EqualFold(strings.TrimSpace(name), want) {
				return true
			}
		}
	}
	return false
}

// splitQuoted splits s at sep, except inside double-quoted strings (where a
// backslash escapes the next character). It always returns at least one
// element.
func splitQuoted(s string, sep byte) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
