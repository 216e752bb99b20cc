package sqlstore_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/ferrytest"
	"github.com/ferrydrive/ferry/sqlstore"
)

// engine opens stores on one database engine: each call of open gives a
// fresh, empty database; reopen opens the same database again.
type engine struct {
	name   string
	newDSN func(t *testing.T) string
}

func engines() []engine {
	return []engine{
		{"SQLite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "data", "ferry.db") }},
		{"Postgres", func(t *testing.T) string { return ferrytest.PostgresDSN(t) }},
	}
}

func open(t *testing.T, dsn string) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func stores(e engine) func(t *testing.T) ferrytest.Stores {
	return func(t *testing.T) ferrytest.Stores {
		s := open(t, e.newDSN(t))
		t.Cleanup(func() { wantConsistent(t, s) })
		return ferrytest.Stores{Items: s, Accounts: s, Dump: func(t *testing.T) string { return dump(t, s) }}
	}
}

// wantConsistent checks, at the end of a test, what the store keeps in
// step across its tables: every item is reachable from its drive's root,
// or (until they are removed) from a deleted folder's hidden top; no copy
// is under way or abandoned with a hidden tree; every blob's reference
// count is the number of items using it; and every drive's used bytes are
// the sizes of its files, those of deleted trees left out. Then it removes
// what deletions left (the sweep's RemoveDeleted) and checks it all again:
// now every item is reachable from its drive's root.
func wantConsistent(t *testing.T, s *sqlstore.Store) {
	t.Helper()
	ctx := context.Background() // t.Context() has ended by now
	const reach = `WITH RECURSIVE r(id) AS (
			SELECT i.id FROM items i JOIN drives d ON d.root_id = i.id
			UNION ALL
			SELECT i.id FROM items i JOIN r ON i.parent_id = r.id
		), gone(id) AS (
			SELECT i.id FROM items i JOIN removals x ON x.top_id = i.id WHERE i.parent_id IS NULL
			UNION ALL
			SELECT i.id FROM items i JOIN gone ON i.parent_id = gone.id
		)`
	check := func(when string) {
		t.Helper()
		for _, c := range []struct{ what, query string }{
			{"items out of reach of their drive's root or a deleted tree's top", reach + `
				SELECT count(*) FROM items WHERE id NOT IN (SELECT id FROM r) AND id NOT IN (SELECT id FROM gone)`},
			{"deleted trees still in reach of a root", reach + `SELECT count(*) FROM removals
				WHERE top_id IN (SELECT id FROM r) OR top_id NOT IN (SELECT id FROM items)`},
			{"copies under way", `SELECT count(*) FROM pending_copies`},
			{"blobs whose reference count is not the items using them", `SELECT count(*) FROM blobs b
				WHERE b.refs <> (SELECT count(*) FROM items i WHERE i.blob_key = b.key)`},
			{"items using a blob the store has no record of", `SELECT count(*) FROM items i
				WHERE i.blob_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.key = i.blob_key)`},
			{"drives whose used bytes are not their files' sizes", reach + `SELECT count(*) FROM drives d
				WHERE d.used <> (SELECT COALESCE(SUM(i.size), 0) FROM items i
					WHERE i.drive_id = d.id AND NOT i.folder AND i.id NOT IN (SELECT id FROM gone))`},
		} {
			var n int
			if err := s.DB().QueryRowContext(ctx, c.query).Scan(&n); err != nil {
				t.Errorf("%s: %s: %v", when, c.what, err)
			} else if n != 0 {
				t.Errorf("%s: %d %s", when, n, c.what)
			}
		}
	}
	check("at the end of the test")
	if _, err := s.RemoveDeleted(ctx, 0); err != nil {
		t.Errorf("RemoveDeleted: %v", err)
	}
	check("once deleted trees are removed")
	var n int
	if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM removals`).Scan(&n); err != nil || n != 0 {
		t.Errorf("once deleted trees are removed: %d left, %v", n, err)
	}
}

func TestItemStore(t *testing.T) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) { ferrytest.TestItemStore(t, stores(e)) })
	}
}

func TestAccountStore(t *testing.T) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) { ferrytest.TestAccountStore(t, stores(e)) })
	}
}

func TestJobStore(t *testing.T) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) {
			ferrytest.TestJobStore(t, func(t *testing.T) ferrytest.JobStore {
				s := open(t, e.newDSN(t))
				t.Cleanup(func() { wantConsistent(t, s) })
				return s
			})
		})
	}
}

// TestLargeCopies runs the copy suite on stores that copy a few items per
// transaction, so that its small trees take several.
func TestLargeCopies(t *testing.T) { onBatchedStores(t, ferrytest.TestLargeCopies) }

// TestLargeDeletes runs the deletion suite on stores that remove a few
// items per transaction, so that its small trees take several.
func TestLargeDeletes(t *testing.T) { onBatchedStores(t, ferrytest.TestLargeDeletes) }

// onBatchedStores runs suite on both engines' stores, each writing at most
// ferrytest.TreeBatch items of a copy or a removal per transaction, and
// checked for consistency after each case.
func onBatchedStores(t *testing.T, suite func(*testing.T, func(*testing.T) ferrytest.JobStore)) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) {
			suite(t, func(t *testing.T) ferrytest.JobStore {
				s := open(t, e.newDSN(t))
				s.SetTreeBatch(ferrytest.TreeBatch)
				t.Cleanup(func() { wantConsistent(t, s) })
				return s
			})
		})
	}
}

func TestJobListing(t *testing.T) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) {
			ferrytest.TestJobListing(t, func(t *testing.T) ferrytest.JobListStore { return open(t, e.newDSN(t)) })
		})
	}
}

// dump returns every value of every table of the store's database as text.
func dump(t *testing.T, s *sqlstore.Store) string {
	t.Helper()
	q := `SELECT name FROM sqlite_master WHERE type = 'table'`
	if s.Postgres() {
		q = `SELECT tablename FROM pg_tables WHERE schemaname = current_schema()`
	}
	tables := query(t, s.DB(), q)
	var b strings.Builder
	for _, row := range tables {
		name := row[0].(string)
		b.WriteString("table " + name + "\n")
		for _, r := range query(t, s.DB(), `SELECT * FROM "`+name+`"`) {
			for _, v := range r {
				if p, ok := v.([]byte); ok {
					v = string(p)
				}
				fmt.Fprintf(&b, "%v\t", v)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

func query(t *testing.T, db *sql.DB, q string) [][]any {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out = append(out, vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReopen checks what must survive closing and opening the database
// again: the data, the secrets, and an already migrated schema.
func TestReopen(t *testing.T) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) {
			ctx := t.Context()
			dsn := e.newDSN(t)
			s1, err := sqlstore.Open(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			secret, err := s1.Secret(ctx, "key", 32)
			if err != nil {
				t.Fatal(err)
			}
			u, _, err := s1.EnsureUser(ctx, "me", 1000)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := s1.CreateToken(ctx, u.ID, ferry.Scopes{ferry.ScopeReadWrite})
			if err != nil {
				t.Fatal(err)
			}
			// A second store on the same database, open at the same time,
			// as when `ferry token create` runs beside `ferry serve`.
			s2 := open(t, dsn)
			if p, err := s2.Authenticate(ctx, tok); err != nil || p.User.ID != u.ID {
				t.Errorf("second store: Authenticate = %v, %v", p, err)
			}
			if err := s1.Close(); err != nil {
				t.Fatal(err)
			}
			s3 := open(t, dsn)
			got, err := s3.Secret(ctx, "key", 32)
			if err != nil || !bytes.Equal(got, secret) {
				t.Errorf("Secret after reopening = %x, %v; want %x", got, err, secret)
			}
			again, created, err := s3.EnsureUser(ctx, "me", 1000)
			if err != nil || created || again.ID != u.ID {
				t.Errorf("EnsureUser after reopening = %v, %v, %v; want the same user", again, created, err)
			}
		})
	}
}

// TestSecretAcrossStores has two stores on one database race for a new
// secret; both must end up with the same bytes.
func TestSecretAcrossStores(t *testing.T) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) {
			dsn := e.newDSN(t)
			a, b := open(t, dsn), open(t, dsn)
			var wg sync.WaitGroup
			got := make([][]byte, 8)
			for i := range got {
				s := a
				if i%2 == 1 {
					s = b
				}
				wg.Go(func() {
					var err error
					if got[i], err = s.Secret(t.Context(), "shared", 16); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			for _, g := range got {
				if !bytes.Equal(g, got[0]) {
					t.Errorf("secrets differ: %x and %x", g, got[0])
				}
			}
		})
	}
}

// TestConcurrentWriters has several goroutines write at once through one
// SQLite store; none may fail with SQLITE_BUSY.
func TestConcurrentWriters(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "ferry.db"))
	ctx := t.Context()
	u, _, err := s.EnsureUser(ctx, "me", 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.DriveOf(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	const writers, each = 8, 25
	for w := range writers {
		wg.Go(func() {
			dir, _, err := s.CreateItem(ctx, ferry.NewItem{ParentID: d.RootID, Name: fmt.Sprint("w", w), Folder: true}, ferry.ConflictFail)
			if err != nil {
				t.Error(err)
				return
			}
			for i := range each {
				key := fmt.Sprintf("k%d-%d", w, i)
				it, _, err := s.CreateItem(ctx, ferry.NewItem{ParentID: dir.ID, Name: key, Content: ferry.Content{Size: 1, BlobKey: key}}, ferry.ConflictFail)
				if err != nil {
					t.Error(err)
					return
				}
				if _, _, err := s.Children(ctx, dir.ID, ferry.ListQuery{}); err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					if err := s.DeleteItem(ctx, it.ID, ""); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	got, err := s.Drive(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(writers * (each / 2)); got.Used != want {
		t.Errorf("Used = %d, want %d", got.Used, want)
	}
	var sum int64
	if err := s.DB().QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0) FROM items WHERE drive_id = ? AND NOT folder`, string(d.ID)).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	if sum != got.Used {
		t.Errorf("drive usage counter %d differs from the sum of file sizes %d", got.Used, sum)
	}
	if root, err := s.Item(ctx, d.RootID); err != nil || root.Size != got.Used {
		t.Errorf("root = %+v, %v; want the size %d, the drive's Used", root, err, got.Used)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dsn := range []string{
		"",
		filepath.Join(dir, "a?b.db"),
		filepath.Join(file, "below-a-file.db"),
		file,
		"postgres://nobody@127.0.0.1:1/none?connect_timeout=1",
		"postgres://%zz",
	} {
		s, err := sqlstore.Open(t.Context(), dsn)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", dsn)
		}
	}
}

// TestMigrationTable checks that goose's bookkeeping stays out of River's
// way (River owns the river_* tables and may share the database).
func TestMigrationTable(t *testing.T) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) {
			s := open(t, e.newDSN(t))
			var n int
			if err := s.DB().QueryRowContext(t.Context(), `SELECT count(*) FROM ferry_migrations`).Scan(&n); err != nil || n == 0 {
				t.Errorf("ferry_migrations has %d rows, %v", n, err)
			}
		})
	}
}

// TestFolderSizeMigration checks that migration 3 computes the sizes of
// folders made before the store kept them: it forgets the sizes and that
// the migration (and those after it) ran, and opens the database again.
func TestFolderSizeMigration(t *testing.T) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) {
			ctx := t.Context()
			dsn := e.newDSN(t)
			s := open(t, dsn)
			u, _, err := s.EnsureUser(ctx, "me", 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			d, err := s.DriveOf(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			mk := func(parent ferry.ItemID, name string, size int64) ferry.ItemID {
				t.Helper()
				n := ferry.NewItem{ParentID: parent, Name: name, Folder: size < 0}
				if size >= 0 {
					n.Content = ferry.Content{Size: size, BlobKey: "blob-" + name}
				}
				it, _, err := s.CreateItem(ctx, n, ferry.ConflictFail)
				if err != nil {
					t.Fatal(err)
				}
				return it.ID
			}
			a := mk(d.RootID, "a", -1)
			b := mk(a, "b", -1)
			empty := mk(a, "empty", -1)
			mk(a, "a1", 1)
			mk(b, "b1", 10)
			mk(b, "b2", 10) // same size twice: both count
			mk(d.RootID, "r", 100)
			for _, q := range []string{
				`UPDATE items SET size = 0 WHERE folder`,
				// Later migrations run again too, since goose applies
				// them in order only: each must be undone here.
				`DELETE FROM ferry_migrations WHERE version_id >= 3`,
				`DROP INDEX upload_sessions_drive`, // 4
				`DROP TABLE upload_fragments`,      // 9
				`ALTER TABLE upload_sessions DROP COLUMN hashed`,
				`ALTER TABLE upload_sessions DROP COLUMN hash_state`,
				`ALTER TABLE upload_sessions DROP COLUMN held`,
				`ALTER TABLE upload_sessions DROP COLUMN busy_until`,
				// 7
				`ALTER TABLE ferry_jobs DROP COLUMN request_id`,
				`DROP INDEX users_email`,
				`ALTER TABLE users DROP COLUMN email`,
				`ALTER TABLE tokens DROP COLUMN last_used`,
				`ALTER TABLE tokens DROP COLUMN expires`,
				`ALTER TABLE tokens DROP COLUMN name`,
				`DROP INDEX tokens_id`,
				`ALTER TABLE tokens DROP COLUMN id`,
				`DROP TABLE permissions`, // 13
				`DROP TABLE delta_pages`, // 8
				`DROP TABLE delta_sessions`,
				`DROP TABLE item_changes`,
				`DROP INDEX items_drive_name`,
				`ALTER TABLE drives DROP COLUMN delta_seq`,
				`ALTER TABLE drives DROP COLUMN delta_floor`,
				// 11
				`ALTER TABLE ferry_jobs DROP COLUMN mirrors`,
			} {
				if _, err := s.DB().ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = open(t, dsn)
			for _, tt := range []struct {
				id   ferry.ItemID
				want int64
			}{{d.RootID, 121}, {a, 21}, {b, 20}, {empty, 0}} {
				it, err := s.Item(ctx, tt.id)
				if err != nil {
					t.Fatal(err)
				}
				if it.Size != tt.want {
					t.Errorf("after migrating, %q has size %d, want %d", it.Name, it.Size, tt.want)
				}
			}
			if got, err := s.Drive(ctx, d.ID); err != nil || got.Used != 121 {
				t.Errorf("Drive = %+v, %v; want Used 121", got, err)
			}
		})
	}
}

func TestShareStore(t *testing.T) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) {
			ferrytest.TestShareStore(t, func(t *testing.T) ferrytest.ShareStores {
				s := open(t, e.newDSN(t))
				return ferrytest.ShareStores{Items: s, Accounts: s, Shares: s}
			})
		})
	}
}
