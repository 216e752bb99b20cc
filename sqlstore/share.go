package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/ferrydrive/ferry"
)

// permissionColumns are read by scanPermission, in this order.
const permissionColumns = `p.id, p.drive_id, p.item_id, p.role, p.link_type, p.link_token, p.password, p.expires,
	p.grantee_id, COALESCE(u.name, ''), p.grantee_email, p.created_by, p.created`

// permissionFrom joins the grantee's name.
const permissionFrom = ` FROM permissions p LEFT JOIN users u ON u.id = p.grantee_id `

func scanPermission(sc interface{ Scan(...any) error }) (*ferry.Permission, error) {
	var p ferry.Permission
	var token, grantee sql.NullString
	var expires sql.NullInt64
	var created int64
	var role, link string
	err := sc.Scan(&p.ID, &p.DriveID, &p.ItemID, &role, &link, &token, &p.Password, &expires,
		&grantee, &p.GranteeName, &p.GranteeEmail, &p.CreatedBy, &created)
	if err != nil {
		return nil, err
	}
	p.Role, p.Link, p.Token = ferry.Role(role), ferry.LinkType(link), token.String
	p.Grantee = ferry.UserID(grantee.String)
	p.Expires, p.Created = fromNullMillis(expires), fromMillis(created)
	if len(p.Password) == 0 {
		p.Password = nil
	}
	return &p, nil
}

// CreateLink stores a new sharing link on p.ItemID.
func (s *Store) CreateLink(ctx context.Context, p *ferry.Permission) error {
	if p.Link == "" || p.Token == "" {
		return fmt.Errorf("sqlstore: create link: type and token are required")
	}
	return s.tx(ctx, func(_ *sql.Tx, c conn) error {
		drive, err := s.shareDrive(ctx, c, p.ItemID)
		if err != nil {
			return err
		}
		p.ID, p.DriveID, p.Created = ferry.NewID("perm", 12), ferry.DriveID(drive), now()
		var password any
		if len(p.Password) > 0 {
			password = p.Password
		}
		_, err = c.exec(ctx, `INSERT INTO permissions (id, drive_id, item_id, role, link_type, link_token, password, expires, created_by, created)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			p.ID, drive, string(p.ItemID), string(p.Role), string(p.Link), p.Token, password, nullMillis(p.Expires),
			string(p.CreatedBy), millis(p.Created))
		if err != nil {
			return fmt.Errorf("sqlstore: create link: %w", err)
		}
		return nil
	})
}

// shareDrive returns the drive of the item to share, or NotFound if it
// does not exist or is deleted (see item).
func (s *Store) shareDrive(ctx context.Context, c conn, id ferry.ItemID) (string, error) {
	it, err := s.item(ctx, c, id)
	if ferry.KindOf(err) == ferry.NotFound {
		return "", ferry.Errorf(ferry.NotFound, "the item does not exist")
	}
	if err != nil {
		return "", err
	}
	return string(it.DriveID), nil
}

// LinkByToken returns the live link with that token.
func (s *Store) LinkByToken(ctx context.Context, token string, at time.Time) (*ferry.Permission, error) {
	p, err := scanPermission(s.c.row(ctx, `SELECT `+permissionColumns+permissionFrom+`WHERE p.link_token = ?`, token))
	if notFound(err) || ferry.KindOf(err) == ferry.Invalid {
		return nil, ferry.Errorf(ferry.NotFound, "the link does not exist")
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: link: %w", err)
	}
	if p.Expired(at) {
		return nil, ferry.Errorf(ferry.NotFound, "the link has expired")
	}
	return p, nil
}

// Grant gives user role on item, or changes the role of the grant the user
// already has there.
func (s *Store) Grant(ctx context.Context, item ferry.ItemID, user ferry.UserID, email string, role ferry.Role, by ferry.UserID) (*ferry.Permission, error) {
	var id string
	err := s.tx(ctx, func(_ *sql.Tx, c conn) error {
		drive, err := s.shareDrive(ctx, c, item)
		if err != nil {
			return err
		}
		var one int
		err = c.row(ctx, `SELECT 1 FROM users WHERE id = ?`, string(user)).Scan(&one)
		if notFound(err) {
			return ferry.Errorf(ferry.NotFound, "the user does not exist")
		}
		if err != nil {
			return fmt.Errorf("sqlstore: grant: %w", err)
		}
		err = c.row(ctx, `SELECT id FROM permissions WHERE item_id = ? AND grantee_id = ?`, string(item), string(user)).Scan(&id)
		switch {
		case err == nil:
			_, err = c.exec(ctx, `UPDATE permissions SET role = ? WHERE id = ?`, string(role), id)
		case notFound(err):
			id = ferry.NewID("perm", 12)
			_, err = c.exec(ctx, `INSERT INTO permissions (id, drive_id, item_id, role, grantee_id, grantee_email, created_by, created)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
				id, drive, string(item), string(role), string(user), email, string(by), millis(now()))
		}
		if err != nil {
			return fmt.Errorf("sqlstore: grant: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.permission(ctx, item, id)
}

func (s *Store) permission(ctx context.Context, item ferry.ItemID, id string) (*ferry.Permission, error) {
	p, err := scanPermission(s.c.row(ctx, `SELECT `+permissionColumns+permissionFrom+`WHERE p.item_id = ? AND p.id = ?`, string(item), id))
	if notFound(err) || ferry.KindOf(err) == ferry.Invalid {
		return nil, ferry.Errorf(ferry.NotFound, "the item has no permission %q", id)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: permission: %w", err)
	}
	return p, nil
}

// Permissions lists the permissions set on the item itself, oldest first.
func (s *Store) Permissions(ctx context.Context, item ferry.ItemID) ([]*ferry.Permission, error) {
	return s.permissions(ctx, `WHERE p.item_id = ? ORDER BY p.created, p.id`, string(item))
}

// SharedWith lists the grants made to user, newest first.
func (s *Store) SharedWith(ctx context.Context, user ferry.UserID) ([]*ferry.Permission, error) {
	return s.permissions(ctx, `WHERE p.grantee_id = ? ORDER BY p.created DESC, p.id`, string(user))
}

func (s *Store) permissions(ctx context.Context, where string, args ...any) ([]*ferry.Permission, error) {
	rows, err := s.c.query(ctx, `SELECT `+permissionColumns+permissionFrom+where, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: permissions: %w", err)
	}
	defer rows.Close()
	var out []*ferry.Permission
	for rows.Next() {
		p, err := scanPermission(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: permissions: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: permissions: %w", err)
	}
	return out, nil
}

// SetRole changes the role of one permission of the item.
func (s *Store) SetRole(ctx context.Context, item ferry.ItemID, id string, role ferry.Role) (*ferry.Permission, error) {
	res, err := s.write(ctx, `UPDATE permissions SET role = ? WHERE item_id = ? AND id = ?`, string(role), string(item), id)
	if err != nil && ferry.KindOf(err) != ferry.Invalid {
		return nil, fmt.Errorf("sqlstore: set role: %w", err)
	}
	if err == nil {
		var n int64
		if n, err = rowsAffected(res); err != nil {
			return nil, err
		}
		if n == 1 {
			return s.permission(ctx, item, id)
		}
	}
	return nil, ferry.Errorf(ferry.NotFound, "the item has no permission %q", id)
}

// DeletePermission removes one permission of the item.
func (s *Store) DeletePermission(ctx context.Context, item ferry.ItemID, id string) error {
	res, err := s.write(ctx, `DELETE FROM permissions WHERE item_id = ? AND id = ?`, string(item), id)
	if err != nil && ferry.KindOf(err) != ferry.Invalid {
		return fmt.Errorf("sqlstore: delete permission: %w", err)
	}
	if err == nil {
		n, err := rowsAffected(res)
		if err != nil {
			return err
		}
		if n == 1 {
			return nil
		}
	}
	return ferry.Errorf(ferry.NotFound, "the item has no permission %q", id)
}

// Access reports the strongest role that grants to user give on item,
// through the item or any folder above it. The walk up the tree is one
// recursive query, bounded by the depth of the tree.
func (s *Store) Access(ctx context.Context, user ferry.UserID, item ferry.ItemID) (ferry.Role, error) {
	rows, err := s.c.query(ctx, `WITH RECURSIVE up (id, parent_id) AS (
			SELECT id, parent_id FROM items WHERE id = ?
			UNION ALL
			SELECT i.id, i.parent_id FROM items i JOIN up ON i.id = up.parent_id
		)
		SELECT p.role FROM permissions p JOIN up ON p.item_id = up.id WHERE p.grantee_id = ?`,
		string(item), string(user))
	if ferry.KindOf(err) == ferry.Invalid {
		return "", ferry.Errorf(ferry.NotFound, "no access")
	}
	if err != nil {
		return "", fmt.Errorf("sqlstore: access: %w", err)
	}
	defer rows.Close()
	var best ferry.Role
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return "", fmt.Errorf("sqlstore: access: %w", err)
		}
		if ferry.Role(r) == ferry.RoleWrite || best == "" {
			best = ferry.Role(r)
		}
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("sqlstore: access: %w", err)
	}
	if best == "" {
		return "", ferry.Errorf(ferry.NotFound, "no access")
	}
	return best, nil
}

// UserByEmail finds a user by e-mail address, ignoring case.
func (s *Store) UserByEmail(ctx context.Context, email string) (*ferry.User, error) {
	email = strings.TrimSpace(email)
	if email == "" {
		return nil, ferry.Errorf(ferry.NotFound, "no user has that address")
	}
	var u ferry.User
	var created int64
	err := s.c.row(ctx, `SELECT id, name, email, created FROM users WHERE LOWER(email) = LOWER(?)`, email).Scan(&u.ID, &u.Name, &u.Email, &created)
	if notFound(err) || ferry.KindOf(err) == ferry.Invalid {
		return nil, ferry.Errorf(ferry.NotFound, "no user has the address %s", email)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: user by email: %w", err)
	}
	u.Created = fromMillis(created)
	return &u, nil
}
