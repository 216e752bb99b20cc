package sqlstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
)

// Durability on SQLite, outside the write lock.
//
// With synchronous=FULL, SQLite syncs the WAL inside COMMIT while it holds
// the database's one write lock: for the ~2 ms of the flush nobody else
// can write, and on a busy server that was a third of the writer's time.
// The store therefore opens SQLite with synchronous=NORMAL, where a commit
// writes its WAL frames without syncing them (checkpoints still sync the
// WAL before copying it and the database file after), and syncs the WAL
// itself after each group's commit (group.go), before it tells the group's
// members their outcome. The next group runs its statements meanwhile, and
// one flush covers every group committed before it began. No caller is
// told of a commit before it is durable, as before; what changes is that
// other readers may see a commit up to one flush before it is durable.
// Nothing the server answers shows them that early: the API waits for the
// flush before it writes a response's header or flushes an event
// (Store.Durable). River's own writes outside the groups (leader election,
// maintenance) are made durable by the next flush, or by the next
// checkpoint; losing them to a power cut only delays what they do.
//
// A flush that fails leaves the state of the WAL on disk unknown (Linux
// may have dropped the pages it could not write), so the store refuses
// every write after it, like PostgreSQL, which stops: the server must be
// restarted, and SQLite's recovery then reads what reached the disk.

// walSync syncs one SQLite database's WAL file.
type walSync struct {
	path string // the WAL file: the database's path + "-wal"

	mu        sync.Mutex
	cond      *sync.Cond
	committed uint64 // groups committed so far
	synced    uint64 // of those, the groups known durable
	syncing   bool   // a flush is under way
	down      bool   // the store is closed: a late flush closes the file again
	f         *os.File
	failed    error // the flush that failed; every later one fails too

	sync    func(*os.File) error // datasync; tests replace it
	flushes int                  // flushes run, for tests
}

func newWALSync(dbPath string) *walSync {
	w := &walSync{path: dbPath + "-wal", sync: datasync}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// commit counts a commit whose frames are written and returns its number,
// for wait.
func (w *walSync) commit() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.committed++
	return w.committed
}

// wait returns once commit n is durable: it flushes the WAL itself, unless
// a flush that began after commit n was written is already under way,
// which it waits for.
func (w *walSync) wait(n uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.synced < n && w.failed == nil {
		if w.syncing {
			w.cond.Wait()
			continue
		}
		w.syncing = true
		upTo := w.committed
		w.mu.Unlock()
		err := w.flush()
		w.mu.Lock()
		if w.down {
			w.close()
		}
		w.syncing = false
		w.flushes++
		if err != nil {
			w.failed = fmt.Errorf("sqlstore: sync the database's log: %w; writes are refused until the server restarts", err)
		} else {
			w.synced = max(w.synced, upTo)
		}
		w.cond.Broadcast()
	}
	if w.synced >= n {
		return nil // durable, whatever a later flush met
	}
	return w.failed
}

// settled returns once every commit so far is durable.
func (w *walSync) settled() error {
	w.mu.Lock()
	n := w.committed
	w.mu.Unlock()
	return w.wait(n)
}

// err is the failed flush, if one failed.
func (w *walSync) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed
}

// flush syncs the WAL file. The file is opened once and opened again when
// SQLite replaced it: SQLite deletes the WAL when its last connection
// closes, after a checkpoint has copied the WAL into the database file and
// synced that, so the frames of an old WAL are durable already. For the
// same reason a missing WAL needs no flush.
func (w *walSync) flush() error {
	cur, err := os.Stat(w.path)
	if errors.Is(err, fs.ErrNotExist) {
		w.close()
		return nil
	}
	if err != nil {
		return err
	}
	if w.f != nil {
		if open, err := w.f.Stat(); err != nil || !os.SameFile(open, cur) {
			w.close()
		}
	}
	if w.f == nil {
		f, err := os.Open(w.path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		w.f = f
	}
	return w.sync(w.f)
}

// shut closes the WAL file once no flush is under way; the store is
// closed. A group acknowledged after this still gets its flush (closing
// the database checkpointed the WAL and synced the file, or the WAL is
// still there to sync), which then closes the file again.
func (w *walSync) shut() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.syncing {
		w.cond.Wait()
	}
	w.down = true
	w.close()
}

func (w *walSync) close() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
}
