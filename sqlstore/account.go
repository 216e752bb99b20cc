package sqlstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
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

// Authenticate returns the principal a bearer token stands for, or
// Unauthenticated.
func (s *Store) Authenticate(ctx context.Context, token string) (*ferry.Principal, error) {
	if !strings.HasPrefix(token, tokenPrefix) {
		return nil, ferry.Errorf(ferry.Unauthenticated, "the access token is not valid")
	}
	var p ferry.Principal
	var created int64
	var scopes string
	err := s.c.row(ctx, `SELECT u.id, u.name, u.created, t.scopes FROM tokens t JOIN users u ON u.id = t.user_id
		WHERE t.hash = ?`, tokenHash(token)).Scan(&p.User.ID, &p.User.Name, &created, &scopes)
	if notFound(err) {
		return nil, ferry.Errorf(ferry.Unauthenticated, "the access token is not valid")
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: authenticate: %w", err)
	}
	p.User.Created = fromMillis(created)
	if p.Scopes, err = ferry.ParseScopes(scopes); err != nil {
		return nil, fmt.Errorf("sqlstore: authenticate: stored scopes: %w", err)
	}
	return &p, nil
}

// EnsureUser returns the user called name, creating it, its drive and the
// drive's root folder in one transaction if needed. Two processes calling it
// at once get the same user: the loser of the race on the unique name reads
// the winner's row.
func (s *Store) EnsureUser(ctx context.Context, name string, quota int64) (*ferry.User, bool, error) {
	switch {
	case name == "" || strings.TrimSpace(name) != name || !utf8.ValidString(name) || utf8.RuneCountInString(name) > 255:
		return nil, false, ferry.Errorf(ferry.Invalid, "a user name must be 1 to 255 characters without surrounding spaces")
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return nil, false, ferry.Errorf(ferry.Invalid, "a user name must not contain control characters")
	case quota < 0:
		return nil, false, ferry.Errorf(ferry.Invalid, "the quota must not be negative")
	}
	var u ferry.User
	var created bool
	err := s.tx(ctx, func(_ *sql.Tx, t conn) error {
		ts := now()
		u = ferry.User{ID: ferry.UserID(ferry.NewID("u", 16)), Name: name, Created: ts}
		res, err := t.exec(ctx, `INSERT INTO users (id, name, created) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`,
			string(u.ID), name, millis(ts))
		if err != nil {
			return fmt.Errorf("sqlstore: create user: %w", err)
		}
		n, err := rowsAffected(res)
		if err != nil {
			return err
		}
		if created = n == 1; !created {
			var ms int64
			err := t.row(ctx, `SELECT id, created FROM users WHERE name = ?`, name).Scan(&u.ID, &ms)
			if err != nil {
				return fmt.Errorf("sqlstore: read user: %w", err)
			}
			u.Created = fromMillis(ms)
			return nil
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
			return fmt.Errorf("sqlstore: create drive: %w", err)
		}
		return s.insertItem(ctx, t, root, false)
	})
	if err != nil {
		return nil, false, err
	}
	return &u, created, nil
}

// CreateToken issues a new bearer token: "fy_" and 32 random bytes in
// unpadded base64url. Only its hash is stored.
func (s *Store) CreateToken(ctx context.Context, user ferry.UserID, scopes ferry.Scopes) (string, error) {
	if len(scopes) == 0 {
		return "", ferry.Errorf(ferry.Invalid, "a token needs at least one scope")
	}
	if _, err := ferry.ParseScopes(scopes.String()); err != nil {
		return "", err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("sqlstore: token: %w", err)
	}
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	err := s.tx(ctx, func(_ *sql.Tx, t conn) error {
		var n int
		if err := t.row(ctx, `SELECT count(*) FROM users WHERE id = ?`, string(user)).Scan(&n); err != nil {
			return fmt.Errorf("sqlstore: token: %w", err)
		}
		if n == 0 {
			return ferry.Errorf(ferry.NotFound, "user %s not found", user)
		}
		_, err := t.exec(ctx, `INSERT INTO tokens (hash, user_id, scopes, created) VALUES (?, ?, ?, ?)`,
			tokenHash(token), string(user), scopes.String(), millis(now()))
		if err != nil {
			return fmt.Errorf("sqlstore: token: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return token, nil
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
