package ferrytest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ferrydrive/ferry"
)

// TestAccountStore checks that an AccountStore keeps its contract. newStore
// must return an empty store each time it is called.
func TestAccountStore(t *testing.T, newStore func(t *testing.T) Stores) {
	for _, tt := range []struct {
		name string
		fn   func(*testing.T, Stores)
	}{
		{"EnsureUser", testEnsureUser},
		{"EnsureUserConcurrent", testEnsureUserConcurrent},
		{"EnsureUserInvalid", testEnsureUserInvalid},
		{"Tokens", testTokens},
		{"TokensHashed", testTokensHashed},
		{"DriveNotFound", testDriveNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

func wantUserCount(t *testing.T, s Stores, want int) {
	t.Helper()
	n, err := s.Accounts.UserCount(t.Context())
	if err != nil || n != want {
		t.Errorf("UserCount = %d, %v; want %d", n, err, want)
	}
}

func testEnsureUser(t *testing.T, s Stores) {
	ctx := t.Context()
	wantUserCount(t, s, 0)
	u, created, err := s.Accounts.EnsureUser(ctx, "alice", 12345)
	if err != nil || !created {
		t.Fatalf("EnsureUser(new) = %v, %v, %v; want created", u, created, err)
	}
	if u.Name != "alice" || u.ID == "" {
		t.Errorf("user = %+v", u)
	}
	wantUTC(t, "user Created", u.Created)
	again, created, err := s.Accounts.EnsureUser(ctx, "alice", 999)
	if err != nil || created || again.ID != u.ID || again.Name != "alice" || !again.Created.Equal(u.Created) {
		t.Errorf("EnsureUser(existing) = %+v, %v, %v; want %+v, not created", again, created, err, u)
	}
	wantUserCount(t, s, 1)

	d, err := s.Accounts.DriveOf(ctx, u.ID)
	if err != nil {
		t.Fatalf("DriveOf: %v", err)
	}
	if d.Owner != u.ID || d.OwnerName != "alice" || d.Quota != 12345 || d.Used != 0 || d.RootID == "" {
		t.Errorf("drive = %+v", d)
	}
	if strings.ContainsAny(string(d.ID), "#/?%:") || d.ID == "" {
		t.Errorf("drive ID %q is not URL-safe", d.ID)
	}
	wantUTC(t, "drive Created", d.Created)
	byID, err := s.Accounts.Drive(ctx, d.ID)
	if err != nil || *byID != *d {
		t.Errorf("Drive(%s) = %+v, %v; want %+v", d.ID, byID, err, d)
	}
	root, err := s.Items.Item(ctx, d.RootID)
	if err != nil || !root.Folder || !root.IsRoot() || root.DriveID != d.ID || root.ChildCount != 0 {
		t.Errorf("root of the new drive = %+v, %v", root, err)
	}

	u2, created, err := s.Accounts.EnsureUser(ctx, "Alice", 1)
	if err != nil || !created || u2.ID == u.ID {
		t.Fatalf("EnsureUser(second user) = %v, %v, %v", u2, created, err)
	}
	d2, err := s.Accounts.DriveOf(ctx, u2.ID)
	if err != nil || d2.ID == d.ID || d2.RootID == d.RootID {
		t.Errorf("second drive = %+v, %v; want a drive of its own", d2, err)
	}
	wantUserCount(t, s, 2)
}

func testEnsureUserConcurrent(t *testing.T, s Stores) {
	const n = 8
	users := make([]*ferry.User, n)
	created := make([]bool, n)
	concurrently(n, func(i int) {
		var err error
		users[i], created[i], err = s.Accounts.EnsureUser(t.Context(), "racer", bigQuota)
		if err != nil {
			t.Errorf("EnsureUser: %v", err)
		}
	})
	if t.Failed() {
		return
	}
	if got := len(slices.DeleteFunc(slices.Clone(created), func(c bool) bool { return !c })); got != 1 {
		t.Errorf("%d of %d concurrent EnsureUser calls created the user, want 1", got, n)
	}
	for _, u := range users {
		if u.ID != users[0].ID {
			t.Errorf("concurrent EnsureUser gave IDs %s and %s", u.ID, users[0].ID)
		}
	}
	wantUserCount(t, s, 1)
	if _, err := s.Accounts.DriveOf(t.Context(), users[0].ID); err != nil {
		t.Errorf("DriveOf: %v", err)
	}
}

func testEnsureUserInvalid(t *testing.T, s Stores) {
	_, _, err := s.Accounts.EnsureUser(t.Context(), "", bigQuota)
	wantKind(t, `EnsureUser("")`, err, ferry.Invalid)
	_, _, err = s.Accounts.EnsureUser(t.Context(), "x", -1)
	wantKind(t, "EnsureUser(negative quota)", err, ferry.Invalid)
	wantUserCount(t, s, 0)
}

func testTokens(t *testing.T, s Stores) {
	ctx := t.Context()
	u, _, err := s.Accounts.EnsureUser(ctx, "alice", bigQuota)
	if err != nil {
		t.Fatal(err)
	}
	scopes := ferry.Scopes{ferry.ScopeRead, ferry.ScopeReadWrite}
	tok, err := s.Accounts.CreateToken(ctx, u.ID, scopes)
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	if !strings.HasPrefix(tok, "fy_") || len(tok) < 3+40 {
		t.Errorf("token %q: want fy_ and at least 32 random bytes", tok)
	}
	p, err := s.Accounts.Authenticate(ctx, tok)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if p.User.ID != u.ID || p.User.Name != "alice" || !slices.Equal(p.Scopes, scopes) {
		t.Errorf("principal = %+v, want alice with %v", p, scopes)
	}
	ro, err := s.Accounts.CreateToken(ctx, u.ID, ferry.Scopes{ferry.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	if ro == tok {
		t.Error("two tokens are equal")
	}
	if p, err := s.Accounts.Authenticate(ctx, ro); err != nil || p.Scopes.CanWrite() || !p.Scopes.CanRead() {
		t.Errorf("read-only token: %+v, %v", p, err)
	}
	flip := []byte(tok)
	if flip[len(flip)-1] == 'A' {
		flip[len(flip)-1] = 'B'
	} else {
		flip[len(flip)-1] = 'A'
	}
	for _, bad := range []string{"", "fy_", "fy_unknown", tok + "x", tok[:len(tok)-1], string(flip), "Bearer " + tok, strings.ToUpper(tok)} {
		_, err := s.Accounts.Authenticate(ctx, bad)
		wantKind(t, fmt.Sprintf("Authenticate(%q)", bad), err, ferry.Unauthenticated)
	}
	_, err = s.Accounts.CreateToken(ctx, "NOSUCHUSER", scopes)
	wantKind(t, "CreateToken(missing user)", err, ferry.NotFound)
	_, err = s.Accounts.CreateToken(ctx, u.ID, nil)
	wantKind(t, "CreateToken(no scopes)", err, ferry.Invalid)
}

func testTokensHashed(t *testing.T, s Stores) {
	if s.Dump == nil {
		t.Skip("the store gives no Dump")
	}
	ctx := t.Context()
	u, _, err := s.Accounts.EnsureUser(ctx, "alice", bigQuota)
	if err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for range 3 {
		tok, err := s.Accounts.CreateToken(ctx, u.ID, ferry.Scopes{ferry.ScopeReadWrite})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
	}
	dump := s.Dump(t)
	if !strings.Contains(dump, "alice") {
		t.Fatal("Dump does not show the stored data (no user name in it)")
	}
	for _, tok := range tokens {
		secret := strings.TrimPrefix(tok, "fy_")
		if strings.Contains(dump, secret) || strings.Contains(strings.ToLower(dump), strings.ToLower(secret)) {
			t.Errorf("the store keeps token %s in clear", tok)
		}
	}
}

func testDriveNotFound(t *testing.T, s Stores) {
	_, err := s.Accounts.Drive(t.Context(), "NOSUCHDRIVE")
	wantKind(t, "Drive(missing)", err, ferry.NotFound)
	_, err = s.Accounts.DriveOf(t.Context(), "NOSUCHUSER")
	wantKind(t, "DriveOf(missing)", err, ferry.NotFound)
}
