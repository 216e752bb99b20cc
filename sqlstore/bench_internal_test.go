package sqlstore

import (
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
)

// BenchmarkCreateInLargeFolder creates files, one at a time, alternately
// in a folder of 20,000 files and in one of 10 (the baseline, in the same
// run), and reports the ratio of their times: a folder's size should not
// make creating a file in it slower (its child count, a step per child,
// is not read for that).
//
//	go test -run x -bench CreateInLargeFolder ./sqlstore/
func BenchmarkCreateInLargeFolder(b *testing.B) {
	ctx := b.Context()
	s, d := aliceStore(b, 1<<40)
	file := func(parent ferry.ItemID, name string) ferry.NewItem {
		return ferry.NewItem{DriveID: d.ID, ParentID: parent, Name: name,
			Content: ferry.Content{Size: 1, BlobKey: ferry.NewID("blob-", 8)}}
	}
	folder := func(name string, files int) ferry.ItemID {
		f, _, err := s.CreateItem(ctx, ferry.NewItem{DriveID: d.ID, ParentID: d.RootID, Name: name, Folder: true}, ferry.ConflictFail)
		if err != nil {
			b.Fatal(err)
		}
		for done := 0; done < files; {
			err := s.tx(ctx, func(_ *sql.Tx, t conn) error {
				for n := 0; n < 5000 && done < files; n, done = n+1, done+1 {
					if _, _, err := s.createItem(ctx, t, d.ID, file(f.ID, fmt.Sprint("f", done)), ferry.ConflictFail); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		return f.ID
	}
	large, small := folder("large", 20000), folder("small", 10)
	var inLarge, inSmall time.Duration
	i := 0
	for b.Loop() {
		for _, f := range []struct {
			id ferry.ItemID
			d  *time.Duration
		}{{small, &inSmall}, {large, &inLarge}} {
			began := time.Now()
			if _, _, err := s.CreateItem(ctx, file(f.id, fmt.Sprint("new", i)), ferry.ConflictFail); err != nil {
				b.Fatal(err)
			}
			*f.d += time.Since(began)
		}
		i++
	}
	b.ReportMetric(float64(inLarge)/float64(inSmall), "large/small")
}
