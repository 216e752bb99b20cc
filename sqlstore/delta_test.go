package sqlstore_test

import (
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
)

// TestPruneDelta checks that pruning the change record makes the tokens
// from before it answer Gone, while a new enumeration and token=latest
// keep working, and that an unfinished listing is dropped after a day.
func TestPruneDelta(t *testing.T) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) {
			ctx := t.Context()
			s := open(t, e.newDSN(t))
			u, _, err := s.EnsureUser(ctx, "me", 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			d, err := s.DriveOf(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			mk := func(name string) {
				t.Helper()
				if _, _, err := s.CreateItem(ctx, ferry.NewItem{ParentID: d.RootID, Name: name, Folder: true}, ferry.ConflictFail); err != nil {
					t.Fatal(err)
				}
			}
			mk("a")
			mk("b")
			first, err := s.Delta(ctx, d.RootID, ferry.DeltaQuery{Limit: 1})
			if err != nil || first.Next == "" {
				t.Fatalf("Delta = %+v, %v; want a first page of several", first, err)
			}
			latest, err := s.Delta(ctx, d.RootID, ferry.DeltaQuery{Token: ferry.LatestToken})
			if err != nil {
				t.Fatal(err)
			}
			mk("c")
			// Pruning what is older than now keeps the token usable.
			if err := s.PruneDelta(ctx, time.Now().Add(-time.Hour)); err != nil {
				t.Fatal(err)
			}
			if p, err := s.Delta(ctx, d.RootID, ferry.DeltaQuery{Token: latest.Token}); err != nil || len(p.Changes) != 1 {
				t.Fatalf("Delta after a prune of nothing = %+v, %v; want c", p, err)
			}
			if err := s.PruneDelta(ctx, time.Now().Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			_, err = s.Delta(ctx, d.RootID, ferry.DeltaQuery{Token: latest.Token})
			if ferry.KindOf(err) != ferry.Gone {
				t.Errorf("Delta with a pruned token: %v, want Gone", err)
			}
			all, err := s.Delta(ctx, d.RootID, ferry.DeltaQuery{})
			if err != nil || len(all.Changes) != 4 || all.Token == "" {
				t.Fatalf("enumeration after the prune = %+v, %v; want root, a, b, c", all, err)
			}
			// The first listing is still open; a prune a day later ends it.
			if _, err := s.Delta(ctx, d.RootID, ferry.DeltaQuery{Cursor: first.Next, Limit: 1}); err != nil {
				t.Fatalf("next page of an open listing: %v", err)
			}
			if _, err := s.DB().ExecContext(ctx, `UPDATE delta_sessions SET created = created - 25*3600*1000`); err != nil {
				t.Fatal(err)
			}
			if err := s.PruneDelta(ctx, time.Now().Add(-time.Hour)); err != nil {
				t.Fatal(err)
			}
			_, err = s.Delta(ctx, d.RootID, ferry.DeltaQuery{Cursor: first.Next, Limit: 1})
			if ferry.KindOf(err) != ferry.Gone {
				t.Errorf("next page of a pruned listing: %v, want Gone", err)
			}
		})
	}
}
