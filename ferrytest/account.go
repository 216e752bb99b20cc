package ferrytest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

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
		{"TokenLifecycle", testTokenLifecycle},
		{"TokenExpiry", testTokenExpiry},
		{"TokenLastUsed", testTokenLastUsed},
		{"CreateUser", testCreateUser},
		{"UsersAndQuota", testUsersAndQuota},
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

// testTokenLifecycle issues labelled tokens, lists them without their
// secrets, and revokes one: it fails at once with the message of any
// invalid token, and the others keep working.
func testTokenLifecycle(t *testing.T, s Stores) {
	ctx := t.Context()
	alice, _, err := s.Accounts.EnsureUser(ctx, "alice", bigQuota)
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err := s.Accounts.EnsureUser(ctx, "bob", bigQuota)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	expires := start.Add(720 * time.Hour)
	sa, ta, err := s.Accounts.IssueToken(ctx, alice.ID, ferry.TokenOptions{Scopes: ferry.Scopes{ferry.ScopeRead}, Name: "laptop", Expires: expires})
	if err != nil {
		t.Fatalf("IssueToken: %v", err)
	}
	if !strings.HasPrefix(sa, "fy_") || !strings.HasPrefix(ta.ID, "tok_") || strings.Contains(sa, strings.TrimPrefix(ta.ID, "tok_")) {
		t.Errorf("IssueToken = %q, %+v: want fy_… and an ID unrelated to it", sa, ta)
	}
	if ta.UserID != alice.ID || ta.UserName != "alice" || ta.Name != "laptop" || !slices.Equal(ta.Scopes, ferry.Scopes{ferry.ScopeRead}) ||
		ta.Expires.Sub(expires).Abs() > time.Millisecond || !ta.LastUsed.IsZero() {
		t.Errorf("issued token = %+v", ta)
	}
	wantUTC(t, "token Created", ta.Created)
	sb, tb, err := s.Accounts.IssueToken(ctx, bob.ID, ferry.TokenOptions{Scopes: ferry.Scopes{ferry.ScopeReadWrite}})
	if err != nil {
		t.Fatal(err)
	}
	sa2, err := s.Accounts.CreateToken(ctx, alice.ID, ferry.Scopes{ferry.ScopeReadWrite})
	if err != nil {
		t.Fatal(err)
	}

	all, err := s.Accounts.Tokens(ctx, "")
	if err != nil {
		t.Fatalf("Tokens: %v", err)
	}
	if len(all) != 3 {
		t.Fatalf("Tokens(all) = %d tokens, want 3", len(all))
	}
	listed := fmt.Sprintf("%+v %+v %+v", *all[0], *all[1], *all[2])
	for _, secret := range []string{sa, sb, sa2} {
		if strings.Contains(listed, strings.TrimPrefix(secret, "fy_")) {
			t.Errorf("Tokens shows a secret: %s", listed)
		}
	}
	byID := map[string]*ferry.Token{}
	for i, tok := range all {
		byID[tok.ID] = tok
		if i > 0 && tok.Created.Before(all[i-1].Created) {
			t.Errorf("Tokens = %s; want oldest first", listed)
		}
	}
	if a, b := byID[ta.ID], byID[tb.ID]; a == nil || b == nil || a.Name != "laptop" || a.Expires.IsZero() || !b.Expires.IsZero() || b.UserName != "bob" {
		t.Errorf("Tokens = %s; want the labels and expiries given", listed)
	}
	mine, err := s.Accounts.Tokens(ctx, alice.ID)
	if err != nil || len(mine) != 2 || mine[0].UserName != "alice" || mine[1].UserName != "alice" {
		t.Errorf("Tokens(alice) = %v, %v; want her 2", mine, err)
	}

	if err := s.Accounts.RevokeToken(ctx, ta.ID); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	_, err = s.Accounts.Authenticate(ctx, sa)
	wantKind(t, "Authenticate(revoked)", err, ferry.Unauthenticated)
	_, unknown := s.Accounts.Authenticate(ctx, "fy_unknown")
	if ferry.Message(err) != ferry.Message(unknown) {
		t.Errorf("a revoked token says %q, an unknown one %q: want the same", ferry.Message(err), ferry.Message(unknown))
	}
	for _, ok := range []string{sb, sa2} {
		if _, err := s.Accounts.Authenticate(ctx, ok); err != nil {
			t.Errorf("another token after a revoke: %v", err)
		}
	}
	wantKind(t, "RevokeToken(again)", s.Accounts.RevokeToken(ctx, ta.ID), ferry.NotFound)
	wantKind(t, "RevokeToken(unknown)", s.Accounts.RevokeToken(ctx, "tok_nosuch"), ferry.NotFound)
	if all, err := s.Accounts.Tokens(ctx, ""); err != nil || len(all) != 2 {
		t.Errorf("Tokens after a revoke = %d, %v; want 2", len(all), err)
	}

	_, _, err = s.Accounts.IssueToken(ctx, alice.ID, ferry.TokenOptions{Scopes: ferry.Scopes{ferry.ScopeRead}, Name: "bad\nlabel"})
	wantKind(t, "IssueToken(control character in label)", err, ferry.Invalid)
	_, _, err = s.Accounts.IssueToken(ctx, "NOSUCHUSER", ferry.TokenOptions{Scopes: ferry.Scopes{ferry.ScopeRead}})
	wantKind(t, "IssueToken(missing user)", err, ferry.NotFound)
}

// testTokenExpiry: a token is refused once its expiry has passed, with
// the message of any invalid token; it still shows in the list.
func testTokenExpiry(t *testing.T, s Stores) {
	ctx := t.Context()
	u, _, err := s.Accounts.EnsureUser(ctx, "alice", bigQuota)
	if err != nil {
		t.Fatal(err)
	}
	past, _, err := s.Accounts.IssueToken(ctx, u.ID, ferry.TokenOptions{Scopes: ferry.Scopes{ferry.ScopeRead}, Expires: time.Now().Add(-time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Accounts.Authenticate(ctx, past)
	wantKind(t, "Authenticate(expired)", err, ferry.Unauthenticated)
	soon, _, err := s.Accounts.IssueToken(ctx, u.ID, ferry.TokenOptions{Scopes: ferry.Scopes{ferry.ScopeRead}, Expires: time.Now().Add(300 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Accounts.Authenticate(ctx, soon); err != nil {
		t.Fatalf("Authenticate before the expiry: %v", err)
	}
	time.Sleep(400 * time.Millisecond)
	_, err = s.Accounts.Authenticate(ctx, soon)
	wantKind(t, "Authenticate(just expired)", err, ferry.Unauthenticated)
	all, err := s.Accounts.Tokens(ctx, u.ID)
	if err != nil || len(all) != 2 || !all[0].Expired(time.Now()) || !all[1].Expired(time.Now()) {
		t.Errorf("Tokens = %v, %v; want both, expired", all, err)
	}
}

// testTokenLastUsed: using a token records when, and a burst of requests
// does not move it again within the minute.
func testTokenLastUsed(t *testing.T, s Stores) {
	ctx := t.Context()
	u, _, err := s.Accounts.EnsureUser(ctx, "alice", bigQuota)
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := s.Accounts.IssueToken(ctx, u.ID, ferry.TokenOptions{Scopes: ferry.Scopes{ferry.ScopeRead}})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	if _, err := s.Accounts.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
	list, err := s.Accounts.Tokens(ctx, u.ID)
	if err != nil || len(list) != 1 {
		t.Fatalf("Tokens = %v, %v", list, err)
	}
	first := list[0].LastUsed
	if first.Before(before) || first.After(time.Now().Add(time.Second)) {
		t.Fatalf("LastUsed = %v after a use at about %v", first, before)
	}
	wantUTC(t, "LastUsed", first)
	time.Sleep(5 * time.Millisecond)
	for range 5 {
		if _, err := s.Accounts.Authenticate(ctx, secret); err != nil {
			t.Fatal(err)
		}
	}
	list, err = s.Accounts.Tokens(ctx, u.ID)
	if err != nil || !list[0].LastUsed.Equal(first) {
		t.Errorf("LastUsed moved from %v to %v within a minute", first, list[0].LastUsed)
	}
}

func testCreateUser(t *testing.T, s Stores) {
	ctx := t.Context()
	u, err := s.Accounts.CreateUser(ctx, "carol", "Carol@Example.com", 5000)
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if u.Name != "carol" || u.Email != "Carol@Example.com" || u.ID == "" {
		t.Errorf("user = %+v", u)
	}
	d, err := s.Accounts.DriveOf(ctx, u.ID)
	if err != nil || d.Quota != 5000 {
		t.Errorf("drive = %+v, %v; want quota 5000", d, err)
	}
	_, err = s.Accounts.CreateUser(ctx, "carol", "", 1)
	wantKind(t, "CreateUser(taken name)", err, ferry.NameConflict)
	_, err = s.Accounts.CreateUser(ctx, "carol2", "carol@example.COM", 1)
	wantKind(t, "CreateUser(taken e-mail, other case)", err, ferry.NameConflict)
	for _, bad := range []string{"carol", "a b@example.com", "Carol <c@example.com>", "c@"} {
		_, err = s.Accounts.CreateUser(ctx, "dave", bad, 1)
		wantKind(t, fmt.Sprintf("CreateUser(email %q)", bad), err, ferry.Invalid)
	}
	// Users without an address do not clash with each other.
	for _, name := range []string{"erin", "frank"} {
		if _, err := s.Accounts.CreateUser(ctx, name, "", 1); err != nil {
			t.Errorf("CreateUser(%s, no e-mail): %v", name, err)
		}
	}
	got, err := s.Accounts.UserByName(ctx, "carol")
	if err != nil || got.ID != u.ID || got.Email != u.Email || !got.Created.Equal(u.Created) {
		t.Errorf("UserByName = %+v, %v; want %+v", got, err, u)
	}
	_, err = s.Accounts.UserByName(ctx, "nobody")
	wantKind(t, "UserByName(missing)", err, ferry.NotFound)
	// The e-mail address comes with the principal.
	tok, err := s.Accounts.CreateToken(ctx, u.ID, ferry.Scopes{ferry.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := s.Accounts.Authenticate(ctx, tok); err != nil || p.User.Email != u.Email {
		t.Errorf("principal = %+v, %v; want e-mail %s", p, err, u.Email)
	}
	wantUserCount(t, s, 3)
}

func testUsersAndQuota(t *testing.T, s Stores) {
	ctx := t.Context()
	for _, name := range []string{"zed", "amy"} {
		if _, _, err := s.Accounts.EnsureUser(ctx, name, bigQuota); err != nil {
			t.Fatal(err)
		}
	}
	users, err := s.Accounts.Users(ctx)
	if err != nil || len(users) != 2 || users[0].Name != "amy" || users[1].Name != "zed" {
		t.Fatalf("Users = %v, %v; want amy, zed", users, err)
	}
	if err := s.Accounts.SetQuota(ctx, users[0].ID, 777); err != nil {
		t.Fatalf("SetQuota: %v", err)
	}
	if d, err := s.Accounts.DriveOf(ctx, users[0].ID); err != nil || d.Quota != 777 {
		t.Errorf("drive after SetQuota = %+v, %v", d, err)
	}
	wantKind(t, "SetQuota(negative)", s.Accounts.SetQuota(ctx, users[0].ID, -1), ferry.Invalid)
	wantKind(t, "SetQuota(missing user)", s.Accounts.SetQuota(ctx, "NOSUCHUSER", 1), ferry.NotFound)
}
