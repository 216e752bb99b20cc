package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferrydrive/ferry/ferrytest"
)

// cli runs a ferry command in process and returns its stdout.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut strings.Builder
	if err := run(t.Context(), args, func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatalf("ferry %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

// cliFails runs a ferry command that must fail and returns its error.
func cliFails(t *testing.T, args ...string) error {
	t.Helper()
	err := run(t.Context(), args, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil {
		t.Fatalf("ferry %s succeeded, want an error", strings.Join(args, " "))
	}
	return err
}

// wantStatus makes one request with the token and checks the status (and,
// for 401, Graph's unauthenticated code).
func wantStatus(t *testing.T, base, token string, want int) {
	t.Helper()
	resp := server{base: base, token: token}.do(t, "GET", "/v1.0/me/drive", "")
	if resp.StatusCode != want {
		t.Fatalf("GET /me/drive with the token: %d, want %d", resp.StatusCode, want)
	}
	if want == http.StatusUnauthorized {
		if e := decodeJSON(t, resp.Body)["error"].(map[string]any); e["code"] != "unauthenticated" {
			t.Errorf("401 with code %v, want unauthenticated", e["code"])
		}
	}
}

// TestTokenAndUserCommands drives the token lifecycle and the user
// commands against a running server, on SQLite (--data) and PostgreSQL
// (--db): a revoked or expired token fails on the very next request, and
// neither the list nor the server's log shows a secret.
func TestTokenAndUserCommands(t *testing.T) {
	for _, tt := range []struct {
		name string
		db   func(t *testing.T) []string
	}{
		{"SQLite", func(t *testing.T) []string { return []string{"--data", t.TempDir()} }},
		{"PostgreSQL", func(t *testing.T) []string {
			return []string{"--data", t.TempDir(), "--db", ferrytest.PostgresDSN(t)}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			where := tt.db(t)
			s := startLogged(t, nil, where...)
			cmd := func(args ...string) []string { return append(args, where...) }

			laptop := strings.TrimSpace(cli(t, cmd("token", "create", "--user", "alice", "--name", "my laptop", "--expires", "720h")...))
			if !strings.HasPrefix(laptop, "fy_") || strings.ContainsAny(laptop, " \n") {
				t.Fatalf("token create printed %q, want only the token", laptop)
			}
			ci := strings.TrimSpace(cli(t, cmd("token", "create", "--user", "alice", "--scopes", "Files.Read", "--name", "ci")...))
			wantStatus(t, s.base, laptop, 200)
			wantStatus(t, s.base, ci, 200)

			table := cli(t, cmd("token", "list", "--user", "alice")...)
			lines := strings.Split(strings.TrimSpace(table), "\n")
			if len(lines) != 3 || strings.Fields(lines[0])[0] != "ID" {
				t.Fatalf("token list --user alice:\n%s\nwant a header starting with ID and 2 tokens", table)
			}
			var laptopID string
			for _, l := range lines[1:] {
				f := strings.Fields(l)
				if f[1] != "alice" {
					t.Errorf("token list --user alice shows %q", l)
				}
				if f[2] == "my_laptop" {
					laptopID = f[0]
					if f[5] == "never" || f[6] == "never" {
						t.Errorf("laptop token row %q: want an expiry and a last use", l)
					}
				}
			}
			if laptopID == "" {
				t.Fatalf("no row labelled my_laptop in:\n%s", table)
			}
			if all := cli(t, cmd("token", "list")...); strings.Count(all, "\n") != 4 { // header, me, 2 of alice
				t.Errorf("token list:\n%s\nwant 3 tokens", all)
			}
			var listed []tokenJSON
			if err := json.Unmarshal([]byte(cli(t, cmd("token", "list", "--json")...)), &listed); err != nil || len(listed) != 3 {
				t.Fatalf("token list --json: %v, %d tokens", err, len(listed))
			}
			for _, out := range []string{table, cli(t, cmd("token", "list", "--json")...)} {
				for _, secret := range []string{laptop, ci, s.token} {
					if strings.Contains(out, strings.TrimPrefix(secret, "fy_")) {
						t.Errorf("token list shows a secret:\n%s", out)
					}
				}
			}

			// Revoke: the next request fails, the other token still works.
			// Flags may follow the ID.
			cli(t, append([]string{"token", "revoke", laptopID}, where...)...)
			wantStatus(t, s.base, laptop, http.StatusUnauthorized)
			wantStatus(t, s.base, ci, 200)
			if err := cliFails(t, cmd("token", "revoke", laptopID)...); !strings.Contains(err.Error(), laptopID) {
				t.Errorf("revoking twice: %v", err)
			}

			// Expiry.
			brief := strings.TrimSpace(cli(t, cmd("token", "create", "--user", "alice", "--expires", "1s")...))
			wantStatus(t, s.base, brief, 200)
			time.Sleep(1100 * time.Millisecond)
			wantStatus(t, s.base, brief, http.StatusUnauthorized)

			// Users.
			if out := cli(t, cmd("user", "create", "bob", "--email", "bob@example.com")...); !strings.Contains(out, "bob") {
				t.Errorf("user create printed %q", out)
			}
			cliFails(t, cmd("user", "create", "bob")...)
			cliFails(t, cmd("user", "create", "bobby", "--email", "BOB@example.com")...)
			cliFails(t, cmd("user", "create", "carl", "--email", "not an address")...)
			cli(t, cmd("user", "quota", "bob", "10GiB")...)
			cliFails(t, cmd("user", "quota", "nobody", "1GiB")...)
			cliFails(t, cmd("user", "quota", "bob", "lots")...)
			users := cli(t, cmd("user", "list")...)
			if !strings.Contains(users, "bob@example.com") || !strings.Contains(users, "10GiB") || !strings.Contains(users, "alice") {
				t.Errorf("user list:\n%s", users)
			}
			bob := strings.TrimSpace(cli(t, cmd("token", "create", "--user", "bob")...))
			drive := decodeJSON(t, server{base: s.base, token: bob}.do(t, "GET", "/v1.0/me/drive", "").Body)
			if q := drive["quota"].(map[string]any); q["total"] != float64(10<<30) {
				t.Errorf("bob's drive quota %v, want 10GiB", q)
			}

			if err := s.stop(); err != nil {
				t.Fatal(err)
			}
			for _, secret := range []string{laptop, ci, brief, bob} {
				if strings.Contains(s.log.String(), secret) {
					t.Errorf("the server's log holds a token")
				}
			}
		})
	}
}
