package sqlstore_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
)

// TestBadText hands every kind of lookup and write text that is not valid
// UTF-8 or holds a NUL, as a client can put into a URL or a JSON body.
// PostgreSQL refuses such text (SQLSTATE 22021); the store must answer
// Invalid or NotFound with a message fit for clients, never an internal
// error. SQLite stores any bytes, so there lookups find nothing and
// writes may succeed.
func TestBadText(t *testing.T) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) {
			ctx := t.Context()
			s := open(t, e.newDSN(t))
			u, _, err := s.EnsureUser(ctx, "me", 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			d, err := s.DriveOf(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			check := func(what string, err error) {
				t.Helper()
				if err == nil {
					return
				}
				switch ferry.KindOf(err) {
				case ferry.Invalid, ferry.NotFound:
				default:
					t.Errorf("%s: error of kind %v, want invalid or not found: %v", what, ferry.KindOf(err), err)
				}
				if msg := ferry.Message(err); strings.Contains(msg, "SQLSTATE") || strings.Contains(msg, "byte sequence") {
					t.Errorf("%s: the message shows the database's error: %q", what, msg)
				}
			}
			for _, bad := range []string{"\x00", "a\x00b", "\xff", "caf\xe9"} {
				_, err := s.Item(ctx, ferry.ItemID(bad))
				check("Item", err)
				_, err = s.ItemByPath(ctx, d.RootID, []string{bad})
				check("ItemByPath", err)
				_, err = s.Path(ctx, ferry.ItemID(bad))
				check("Path", err)
				_, _, err = s.Children(ctx, ferry.ItemID(bad), ferry.ListQuery{})
				check("Children", err)
				_, err = s.Drive(ctx, ferry.DriveID(bad))
				check("Drive", err)
				_, err = s.DriveOf(ctx, ferry.UserID(bad))
				check("DriveOf", err)
				_, err = s.Session(ctx, bad)
				check("Session", err)
				_, err = s.AddFragment(ctx, bad, ferry.Range{Start: 0, End: 1}, 1, time.Now().Add(time.Hour))
				check("AddFragment", err)
				check("DeleteSession", s.DeleteSession(ctx, bad))
				_, _, err = s.SessionUsage(ctx, ferry.DriveID(bad))
				check("SessionUsage", err)
				_, err = s.Job(ctx, bad)
				check("Job", err)
				_, err = s.UpdateItem(ctx, ferry.ItemID(bad), ferry.ItemUpdate{})
				check("UpdateItem", err)
				check("DeleteItem", s.DeleteItem(ctx, ferry.ItemID(bad), ""))
				_, _, err = s.CreateItem(ctx, ferry.NewItem{DriveID: d.ID, ParentID: d.RootID, Name: "f" + ferry.NewID("", 16),
					Folder: true, Description: bad}, ferry.ConflictFail)
				check("CreateItem(description)", err)
				desc := bad
				_, err = s.UpdateItem(ctx, d.RootID, ferry.ItemUpdate{Description: &desc})
				check("UpdateItem(description)", err)
			}
		})
	}
}
