package sqlstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ferrydrive/ferry"
)

// tokenPrefix marks Ferry's bearer tokens, so that they are easy to spot
// in logs and by secret scanners.
const tokenPrefix = "fy_"

// tokenHash is what the tokens table keys on: the token itself is never
// stored, so reading the database does not give working tokens.
func tokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// lastUsedEvery bounds how often Authenticate writes a token's last use:
// at most one write per token per interval, however many requests it makes.
const lastUsedEvery = time.Minute

// Authenticate returns the principal a bearer token stands for, or
// Unauthenticated, with one message for unknown, revoked and expired
// tokens. It reads the database every time (no cache), so a revoke or an
// expiry takes effect on the next request on every node.
func (s *Store) Authenticate(ctx context.Context, token string) (*ferry.Principal, error) {
	invalid := ferry.Errorf(ferry.Unauthenticated, "the access token is not valid")
	if !strings.HasPrefix(token, tokenPrefix) {
		return nil, invalid
	}
	var p ferry.Principal
	var created int64
	var id, scopes string
	var email sql.NullString
	var lastUsed sql.NullInt64
	ts := now()
	err := s.c.row(ctx, `SELECT u.id, u.name, u.email, u.created, t.id, t.scopes, t.last_used
		FROM tokens t JOIN users u ON u.id = t.user_id
		WHERE t.hash = ? AND (t.expires IS NULL OR t.expires > ?)`, tokenHash(token), millis(ts)).Scan(
		&p.User.ID, &p.User.Name, &email, &created, &id, &scopes, &lastUsed)
	if notFound(err) {
		return nil, invalid
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: authenticate: %w", err)
	}
	p.User.Email = email.String
	p.User.Created = fromMillis(created)
	if p.Scopes, err = ferry.ParseScopes(scopes); err != nil {
		return nil, fmt.Errorf("sqlstore: authenticate: stored scopes: %w", err)
	}
	if !lastUsed.Valid || ts.Sub(fromMillis(lastUsed.Int64)) >= lastUsedEvery {
		// Bookkeeping only: a busy database must not fail the request,
		// and the next request after lastUsedEvery tries again. The
		// condition keeps concurrent requests from all writing.
		s.write(ctx, `UPDATE tokens SET last_used = ? WHERE id = ? AND (last_used IS NULL OR last_used < ?)`,
			millis(ts), id, millis(ts.Add(-lastUsedEvery)))
	}
	return &p, nil
}

func checkUserName(name string) error {
	switch {
	case name == "" || strings.TrimSpace(name) != name || !utf8.ValidString(name) || utf8.RuneCountInString(name) > 255:
		return ferry.Errorf(ferry.Invalid, "a user name must be 1 to 255 characters without surrounding spaces")
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return ferry.Errorf(ferry.Invalid, "a user name must not contain control characters")
	}
	return nil
}

// checkEmail accepts a bare address (local@domain), as net/mail parses it.
func checkEmail(email string) error {
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || a.Name != "" || len(email) > 254 {
		return ferry.Errorf(ferry.Invalid, "%q is not an e-mail address like name@example.com", email)
	}
	return nil
}

// EnsureUser returns the user called name, creating it, its drive and the
// drive's root folder in one transaction if needed. Two processes calling it
// at once get the same user: the loser of the race on the unique name reads
// the winner's row.
func (s *Store) EnsureUser(ctx context.Context, name string, quota int64) (*ferry.User, bool, error) {
	if err := checkUserName(name); err != nil {
		return nil, false, err
	}
	if quota < 0 {
		return nil, false, ferry.Errorf(ferry.Invalid, "the quota must not be negative")
	}
	var u *ferry.User
	var created bool
	err := s.tx(ctx, func(_ *sql.Tx, t conn) error {
		var err error
		u, created, err = s.insertUser(ctx, t, name, "", quota, true)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return u, created, nil
}

// CreateUser implements ferry.AccountStore.
func (s *Store) CreateUser(ctx context.Context, name, email string, quota int64) (*ferry.User, error) {
	if err := checkUserName(name); err != nil {
		return nil, err
	}
	if email != "" {
		if err := checkEmail(email); err != nil {
			return nil, err
		}
	}
	if quota < 0 {
		return nil, ferry.Errorf(ferry.Invalid, "the quota must not be negative")
	}
	var u *ferry.User
	err := s.tx(ctx, func(_ *sql.Tx, t conn) error {
		if email != "" {
			var n int
			if err := t.row(ctx, `SELECT count(*) FROM users WHERE lower(email) = lower(?)`, email).Scan(&n); err != nil {
				return fmt.Errorf("sqlstore: create user: %w", err)
			}
			if n > 0 {
				return ferry.Errorf(ferry.NameConflict, "another user has the e-mail address %s", email)
			}
		}
		var created bool
		var err error
		u, created, err = s.insertUser(ctx, t, name, email, quota, false)
		if err == nil && !created {
			err = ferry.Errorf(ferry.NameConflict, "a user called %q exists already", name)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

// insertUser creates the user with its drive and root folder; when the
// name is taken it reads that user if read is set (created false).
func (s *Store) insertUser(ctx context.Context, t conn, name, email string, quota int64, read bool) (*ferry.User, bool, error) {
	ts := now()
	u := &ferry.User{ID: ferry.UserID(ferry.NewID("u", 16)), Name: name, Email: email, Created: ts}
	var mail any
	if email != "" {
		mail = email
	}
	res, err := t.exec(ctx, `INSERT INTO users (id, name, email, created) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING`,
		string(u.ID), name, mail, millis(ts))
	if s.d.uniqueViolation(err) {
		return nil, false, ferry.Errorf(ferry.NameConflict, "another user has the e-mail address %s", email)
	}
	if err != nil {
		return nil, false, fmt.Errorf("sqlstore: create user: %w", err)
	}
	n, err := rowsAffected(res)
	if err != nil {
		return nil, false, err
	}
	if n == 0 {
		if !read {
			return nil, false, nil
		}
		var ms int64
		var em sql.NullString
		err := t.row(ctx, `SELECT id, email, created FROM users WHERE name = ?`, name).Scan(&u.ID, &em, &ms)
		if err != nil {
			return nil, false, fmt.Errorf("sqlstore: read user: %w", err)
		}
		u.Email, u.Created = em.String, fromMillis(ms)
		return u, false, nil
	}
	drive := ferry.DriveID(ferry.NewID("d", 16))
	root := &ferry.Item{
		ID:             ferry.ItemID(ferry.NewID("", 16)),
		DriveID:        drive,
		Name:           "root",
		Folder:         true,
		Version:        1,
		ContentVersion: 1,
		Created:        ts,
		Modified:       ts,
		FSCreated:      ts,
		FSModified:     ts,
		CreatedBy:      name,
		ModifiedBy:     name,
	}
	_, err = t.exec(ctx, `INSERT INTO drives (id, owner, root_id, quota, used, created, modified) VALUES (?, ?, ?, ?, 0, ?, ?)`,
		string(drive), string(u.ID), string(root.ID), quota, millis(ts), millis(ts))
	if err != nil {
		return nil, false, fmt.Errorf("sqlstore: create drive: %w", err)
	}
	if err := s.insertItem(ctx, t, root, false); err != nil {
		return nil, false, err
	}
	return u, true, nil
}

const userCols = `id, name, email, created`

func scanUser(sc interface{ Scan(...any) error }) (*ferry.User, error) {
	var u ferry.User
	var email sql.NullString
	var created int64
	if err := sc.Scan(&u.ID, &u.Name, &email, &created); err != nil {
		return nil, err
	}
	u.Email, u.Created = email.String, fromMillis(created)
	return &u, nil
}

// UserByName implements ferry.AccountStore.
func (s *Store) UserByName(ctx context.Context, name string) (*ferry.User, error) {
	u, err := scanUser(s.c.row(ctx, `SELECT `+userCols+` FROM users WHERE name = ?`, name))
	if notFound(err) {
		return nil, ferry.Errorf(ferry.NotFound, "no user called %q", name)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: user: %w", err)
	}
	return u, nil
}

// Users implements ferry.AccountStore.
func (s *Store) Users(ctx context.Context) ([]*ferry.User, error) {
	rows, err := s.c.query(ctx, `SELECT `+userCols+` FROM users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: users: %w", err)
	}
	defer rows.Close()
	var out []*ferry.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: users: %w", err)
	}
	return out, nil
}

// SetQuota implements ferry.AccountStore.
func (s *Store) SetQuota(ctx context.Context, user ferry.UserID, quota int64) error {
	if quota < 0 {
		return ferry.Errorf(ferry.Invalid, "the quota must not be negative")
	}
	res, err := s.write(ctx, `UPDATE drives SET quota = ?, modified = ? WHERE owner = ?`, quota, millis(now()), string(user))
	if err != nil {
		return fmt.Errorf("sqlstore: set quota: %w", err)
	}
	n, err := rowsAffected(res)
	if err != nil {
		return err
	}
	if n == 0 {
		return ferry.Errorf(ferry.NotFound, "user %s has no drive", user)
	}
	return nil
}

// CreateToken issues a new bearer token with the given scopes.
func (s *Store) CreateToken(ctx context.Context, user ferry.UserID, scopes ferry.Scopes) (string, error) {
	tok, _, err := s.IssueToken(ctx, user, ferry.TokenOptions{Scopes: scopes})
	return tok, err
}

// IssueToken implements ferry.AccountStore: the token is "fy_" and 32
// random bytes in unpadded base64url, and only its hash is stored; its ID
// is "tok_" and 16 random hex digits, unrelated to the secret.
func (s *Store) IssueToken(ctx context.Context, user ferry.UserID, opts ferry.TokenOptions) (string, *ferry.Token, error) {
	if len(opts.Scopes) == 0 {
		return "", nil, ferry.Errorf(ferry.Invalid, "a token needs at least one scope")
	}
	if _, err := ferry.ParseScopes(opts.Scopes.String()); err != nil {
		return "", nil, err
	}
	if !utf8.ValidString(opts.Name) || utf8.RuneCountInString(opts.Name) > 255 ||
		strings.ContainsFunc(opts.Name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", nil, ferry.Errorf(ferry.Invalid, "a token label must be at most 255 characters, without control characters")
	}
	b := make([]byte, 32+8)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("sqlstore: token: %w", err)
	}
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:32])
	t := &ferry.Token{ID: "tok_" + hex.EncodeToString(b[32:]), UserID: user, Name: opts.Name,
		Scopes: opts.Scopes, Created: now()}
	var expires any
	if !opts.Expires.IsZero() {
		t.Expires = fromMillis(millis(opts.Expires))
		expires = millis(t.Expires)
	}
	err := s.tx(ctx, func(_ *sql.Tx, c conn) error {
		err := c.row(ctx, `SELECT name FROM users WHERE id = ?`, string(user)).Scan(&t.UserName)
		if notFound(err) {
			return ferry.Errorf(ferry.NotFound, "user %s not found", user)
		}
		if err != nil {
			return fmt.Errorf("sqlstore: token: %w", err)
		}
		_, err = c.exec(ctx, `INSERT INTO tokens (hash, id, user_id, name, scopes, created, expires) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			tokenHash(token), t.ID, string(user), t.Name, t.Scopes.String(), millis(t.Created), expires)
		if err != nil {
			return fmt.Errorf("sqlstore: token: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	return token, t, nil
}

// Tokens implements ferry.AccountStore.
func (s *Store) Tokens(ctx context.Context, user ferry.UserID) ([]*ferry.Token, error) {
	q := `SELECT t.id, t.user_id, u.name, t.name, t.scopes, t.created, t.expires, t.last_used
		FROM tokens t JOIN users u ON u.id = t.user_id`
	var args []any
	if user != "" {
		q += ` WHERE t.user_id = ?`
		args = append(args, string(user))
	}
	rows, err := s.c.query(ctx, q+` ORDER BY t.created, t.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: tokens: %w", err)
	}
	defer rows.Close()
	var out []*ferry.Token
	for rows.Next() {
		var t ferry.Token
		var scopes string
		var created int64
		var expires, lastUsed sql.NullInt64
		if err := rows.Scan(&t.ID, &t.UserID, &t.UserName, &t.Name, &scopes, &created, &expires, &lastUsed); err != nil {
			return nil, fmt.Errorf("sqlstore: tokens: %w", err)
		}
		if t.Scopes, err = ferry.ParseScopes(scopes); err != nil {
			return nil, fmt.Errorf("sqlstore: tokens: stored scopes: %w", err)
		}
		t.Created, t.Expires, t.LastUsed = fromMillis(created), fromNullMillis(expires), fromNullMillis(lastUsed)
		out = append(out, &t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: tokens: %w", err)
	}
	return out, nil
}

// RevokeToken implements ferry.AccountStore: the row goes, so every
// process's next Authenticate of the token fails.
func (s *Store) RevokeToken(ctx context.Context, id string) error {
	res, err := s.write(ctx, `DELETE FROM tokens WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("sqlstore: revoke token: %w", err)
	}
	n, err := rowsAffected(res)
	if err != nil {
		return err
	}
	if n == 0 {
		return ferry.Errorf(ferry.NotFound, "no token with ID %q", id)
	}
	return nil
}

// UserCount reports how many users exist.
func (s *Store) UserCount(ctx context.Context) (int, error) {
	var n int
	if err := s.c.row(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlstore: user count: %w", err)
	}
	return n, nil
}

const driveQuery = `SELECT d.id, d.owner, u.name, d.root_id, d.quota, d.used, d.created, d.modified
	FROM drives d JOIN users u ON u.id = d.owner WHERE `

func (s *Store) drive(ctx context.Context, where string, arg string) (*ferry.Drive, error) {
	var d ferry.Drive
	var created, modified int64
	err := s.c.row(ctx, driveQuery+where, arg).Scan(&d.ID, &d.Owner, &d.OwnerName, &d.RootID, &d.Quota, &d.Used, &created, &modified)
	if notFound(err) {
		return nil, ferry.Errorf(ferry.NotFound, "drive not found")
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: drive: %w", err)
	}
	d.Created, d.Modified = fromMillis(created), fromMillis(modified)
	return &d, nil
}

// Drive returns a drive, or NotFound. Used is the sum of the sizes of its
// files, kept up to date by every change to them.
func (s *Store) Drive(ctx context.Context, id ferry.DriveID) (*ferry.Drive, error) {
	return s.drive(ctx, `d.id = ?`, string(id))
}

// DriveOf returns the user's drive, or NotFound.
func (s *Store) DriveOf(ctx context.Context, user ferry.UserID) (*ferry.Drive, error) {
	return s.drive(ctx, `d.owner = ?`, string(user))
}
