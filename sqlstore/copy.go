package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ferrydrive/ferry"
)

// Copies.
//
// A copy writes one row per item it copies (the bytes are shared: blobs
// are reference-counted), so a large folder is a large write. On SQLite a
// transaction holds the database's one write lock, and every other writer
// (heartbeats, checkpoints, River) waits behind it (see group.go). So a
// copy writes at most the batch of items per transaction (treeBatch, see
// remove.go), in steps:
//
//   - The first step checks what the copy will be refused for anyway
//     (source, destination, name, conflict behaviour) and makes the copy of
//     the source item, its top, with no parent: a hidden item, which no
//     listing, path, search or delta reaches. Each step then copies the next
//     items of the source below the hidden top, walking the source depth
//     first in name order (copyState), and adds the files' bytes to the
//     sizes of the copied folders above them.
//   - The step that finishes the walk also publishes the copy, in the same
//     transaction: it applies the conflict behaviour to the top's name
//     (replace deletes the item in the way as DeleteItem does: a folder of
//     more items than the batch is only taken out of sight here, and its
//     rows are removed afterwards, see remove.go), charges the copy's bytes
//     to the destination drive and folders (QuotaExceeded as for any copy),
//     gives the top its parent and name, and completes the job. The whole
//     tree appears at once; delta reports it as a folder that moved in,
//     which brings its subtree.
//
// A copy of at most the batch of items is thus one transaction, as it
// always was. A larger one records after each step where it stands, in its
// pending_copies row (see migration 00014), which also holds the bytes the
// copy will need (the source's size) as taken in the destination drive, as
// an upload session's declared size is: the copy fails at once with
// QuotaExceeded if they do not fit, and nothing else can take them
// meanwhile. Every step of a job's copy runs only for the runner holding
// the job's claim (jobForCommit), so a runner that lost its claim cannot
// write a batch, and the job's next attempt, on any node, continues where
// the last step stopped. The job's monitor shows the bytes copied so far
// out of the source's size.
//
// A copy whose job ends otherwise (failed, cancelled) leaves its hidden
// tree as garbage: ending the job gives back the room it held (endRun),
// and DropJobCopy, or the sweep's DropAbandonedCopies, deletes the tree in
// steps of the batch of items, as a deleted folder's tree is removed
// (removeBelow), releasing its blob references. Nothing of it was ever
// charged or shown.
//
// A copy that takes several transactions reads its source as each step
// finds it, as a copy made by a client item by item would: an item added,
// moved or deleted in the source while the copy runs may or may not be in
// the copy. The copy is always a consistent tree of its own (folder sizes,
// blob references and quota agree with what it holds), and a copy whose
// source item or destination folder is deleted meanwhile fails with
// NotFound.

// copySpec is what a copy copies where: the source item, the destination
// folder, the name ("" keeps the source's), the conflict behaviour applied
// when the copy appears, and who makes it.
type copySpec struct {
	src, parent ferry.ItemID
	name        string
	conflict    ferry.ConflictBehavior
	by          string
}

// copyOwner is who advances a copy: a copy job's runner, whose claim
// fences every step and whose job the last step completes, or CopyItem.
type copyOwner struct {
	id     string // the pending_copies ID: the job's, or CopyItem's own
	job    bool
	runner string // the job's runner
	msg    string // the job's status description once completed
}

// copyState is where a copy that takes several steps stands: its hidden
// top, the bytes of the files copied so far, and its walk of the source.
// It is stored as JSON in its pending_copies row; V is the encoding's
// version.
type copyState struct {
	V     int          `json:"v"`
	Top   ferry.ItemID `json:"top"`
	Bytes int64        `json:"bytes"`
	// Stack holds the folders being copied, the source item first, each
	// below the one before it. The walk copies the children of the last
	// one in name order and descends into each folder it copies at once,
	// so the folders on the stack are the copied ancestors of the next
	// item: the only folders whose sizes that item's bytes change.
	Stack []copyFrame `json:"stack"`
}

// copyStateVersion is the version of copyState's encoding.
const copyStateVersion = 1

// copyFrame is one folder of the walk: the source folder, its copy, and
// the name key of the last child copied ("" before the first). Children
// are walked by name key, which is unique within a folder, so the walk
// resumes after the last child copied.
type copyFrame struct {
	Src   ferry.ItemID `json:"src"`
	Dst   ferry.ItemID `json:"dst"`
	After string       `json:"after"`
}

// pendingCopy is a copy under way as one step sees it.
type pendingCopy struct {
	id       string
	fresh    bool  // begun by this step: no pending_copies row yet
	reserved int64 // bytes held in the destination drive: the source's size
	state    copyState
}

// AdvanceJobCopy runs one step of the copy job jobID, whose row names the
// source, the destination folder, the name and the conflict behaviour (see
// CopyItem): one transaction that copies at most the batch of items
// out of sight, and, once the whole source is copied, makes the copy
// appear and completes the job, with msg as its status description. It
// returns the copy when the job is completed, nil while more steps are
// needed. Like CommitJobItem it is idempotent by job: a job an earlier
// call completed is returned with already set. Only runner, the attempt
// holding the job's claim, advances a copy (see holdsClaim). Conflict if
// the job ended otherwise or runner lost its claim, NotFound if it does
// not exist; else CopyItem's errors, and then the step changes nothing (a
// failure the copy cannot outlive, such as its source deleted, leaves it
// to the job's end and DropJobCopy).
func (s *Store) AdvanceJobCopy(ctx context.Context, jobID, runner, msg string) (it *ferry.Item, already bool, err error) {
	if runner == "" {
		return nil, false, ferry.Errorf(ferry.Invalid, "a commit needs the job's runner")
	}
	j, err := s.Job(ctx, jobID)
	if err != nil {
		return nil, false, err
	}
	if j.Status == ferry.StatusCompleted {
		it, err := s.Item(ctx, j.ResourceID)
		if ferry.KindOf(err) == ferry.NotFound {
			return &ferry.Item{ID: j.ResourceID}, true, nil
		}
		return it, err == nil, err
	}
	c, err := conflictOrFail(j.Conflict)
	if err != nil {
		return nil, false, err
	}
	spec := copySpec{src: j.SourceItem, parent: j.ParentID, name: j.Name, conflict: c, by: j.UserName}
	return s.copyStep(ctx, spec, copyOwner{id: jobID, job: true, runner: runner, msg: msg})
}

// CopyItem copies an item and its subtree; see ferry.ItemStore. It runs
// the steps of a copy job (AdvanceJobCopy) one after the other, so a large
// tree appears at once however many transactions it takes; a copy that
// fails or whose ctx ends before it appears removes what it built (what a
// crash leaves, DropAbandonedCopies removes). The copies get new IDs,
// versions 1 and the caller as creator; they keep the source's
// fileSystemInfo times, description and blobs. An empty c means fail.
func (s *Store) CopyItem(ctx context.Context, id, parent ferry.ItemID, name string, c ferry.ConflictBehavior, by string) (*ferry.Item, error) {
	c, err := conflictOrFail(c)
	if err != nil {
		return nil, err
	}
	spec := copySpec{src: id, parent: parent, name: name, conflict: c, by: by}
	own := copyOwner{id: ferry.NewID("copy_", 16)}
	for {
		it, _, err := s.copyStep(ctx, spec, own)
		if it != nil {
			return it, nil
		}
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			// A removal that fails now is the sweep's, later.
			_ = s.dropCopy(context.WithoutCancel(ctx), own.id, false)
			return nil, err
		}
	}
}

// copyStep runs one step of a copy (see the comment at the top of the
// file), for own. It returns the copy once it has appeared; already
// reports a job completed by an earlier call.
func (s *Store) copyStep(ctx context.Context, spec copySpec, own copyOwner) (it *ferry.Item, already bool, err error) {
	srcDrive, err := s.driveOf(ctx, spec.src)
	if err != nil {
		return nil, false, err
	}
	dstDrive, err := s.driveOf(ctx, spec.parent)
	if err != nil {
		return nil, false, err
	}
	err = s.tx(ctx, func(_ *sql.Tx, t conn) error {
		it, already = nil, false
		if err := s.lockDrives(ctx, t, srcDrive, dstDrive); err != nil {
			return err
		}
		if own.job {
			_, done, ok, err := s.jobForCommit(ctx, t, own.id, own.runner)
			if err != nil || ok {
				it, already = done, ok
				return err
			}
		}
		budget := s.treeBatch()
		pc, err := s.pendingCopy(ctx, t, own.id)
		if err != nil {
			return err
		}
		if pc == nil {
			if pc, err = s.beginCopy(ctx, t, dstDrive, spec, own.id); err != nil {
				return err
			}
			budget-- // the top
		}
		if err := s.walkCopy(ctx, t, dstDrive, pc, budget, spec.by); err != nil {
			return err
		}
		if len(pc.state.Stack) > 0 {
			return s.saveCopy(ctx, t, dstDrive, pc, own)
		}
		if it, err = s.publishCopy(ctx, t, dstDrive, spec, pc); err != nil {
			return err
		}
		if own.job {
			return s.completeJob(ctx, t, own.id, it, it.Size, own.msg)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return it, already, nil
}

// pendingCopy reads the copy under way with the given ID, or nil if there
// is none.
func (s *Store) pendingCopy(ctx context.Context, t conn, id string) (*pendingCopy, error) {
	pc := &pendingCopy{id: id}
	var state string
	err := t.row(ctx, `SELECT reserved, state FROM pending_copies WHERE id = ?`+s.d.forUpdate(), id).Scan(&pc.reserved, &state)
	if notFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: copy %s: %w", id, err)
	}
	if err := json.Unmarshal([]byte(state), &pc.state); err != nil {
		return nil, fmt.Errorf("sqlstore: copy %s: state: %w", id, err)
	}
	if pc.state.V != copyStateVersion {
		return nil, fmt.Errorf("sqlstore: copy %s: state of version %d, want %d", id, pc.state.V, copyStateVersion)
	}
	return pc, nil
}

// beginCopy is a copy's first step up to the walk: it refuses what the
// copy would be refused for when it appears (the conflict behaviour is
// applied then, and again checked there), and makes the hidden top.
func (s *Store) beginCopy(ctx context.Context, t conn, dstDrive ferry.DriveID, spec copySpec, id string) (*pendingCopy, error) {
	src, err := s.item(ctx, t, spec.src)
	if err != nil {
		return nil, err
	}
	if src.IsRoot() {
		return nil, ferry.Errorf(ferry.Invalid, "the root folder cannot be copied")
	}
	p, err := s.uncounted(ctx, t, spec.parent)
	if err != nil {
		return nil, err
	}
	if !p.Folder {
		return nil, ferry.Errorf(ferry.Invalid, "%q is a file, not a folder", p.Name)
	}
	if src.Folder {
		inside, err := s.contains(ctx, t, src.ID, p.ID)
		if err != nil {
			return nil, err
		}
		if inside {
			return nil, ferry.Errorf(ferry.Invalid, "a folder cannot be copied into itself or one of its subfolders")
		}
	}
	name := spec.name
	if name == "" {
		name = src.Name
	}
	if err := ferry.ValidateName(name, src.Folder); err != nil {
		return nil, err
	}
	if other, err := s.child(ctx, t, p.ID, ferry.NameKey(name)); err != nil {
		return nil, err
	} else if other != nil {
		if err := s.refuseClash(ctx, t, src, other, spec.conflict); err != nil {
			return nil, err
		}
	}
	top := copyOf(src, dstDrive, "", spec.by, now())
	top.Name = name
	if err := s.insertRow(ctx, t, top); err != nil {
		return nil, err
	}
	pc := &pendingCopy{id: id, fresh: true, reserved: src.Size, state: copyState{V: copyStateVersion, Top: top.ID}}
	if src.Folder {
		pc.state.Stack = []copyFrame{{Src: src.ID, Dst: top.ID}}
	} else {
		pc.state.Bytes = src.Size
	}
	return pc, nil
}

// copyOf returns the copy of it for the folder parent of drive: a new ID,
// versions 1, created now by by, the source's fileSystemInfo times,
// description and content. A folder's copy starts empty, with size 0.
func copyOf(it *ferry.Item, drive ferry.DriveID, parent ferry.ItemID, by string, ts time.Time) *ferry.Item {
	cp := *it
	cp.ID = ferry.ItemID(ferry.NewID("", 16))
	cp.DriveID, cp.ParentID = drive, parent
	cp.Version, cp.ContentVersion = 1, 1
	cp.Created, cp.Modified = ts, ts
	cp.CreatedBy, cp.ModifiedBy = by, by
	cp.ChildCount = 0
	if cp.Folder {
		cp.Size = 0
	}
	return &cp
}

// copySource is a source item as the walk reads it, with its name key.
type copySource struct {
	ferry.Item
	key string
}

// walkCopy copies up to budget more items of the source below the copy's
// hidden top, in the walk's order (see copyState), and adds the bytes of
// the files it copies to the sizes of the copied folders above them.
//
// Each folder's children are read once per step, up to budget of them, and
// kept while the walk is below that folder: the rows read in this
// transaction are not read again in it.
func (s *Store) walkCopy(ctx context.Context, t conn, drive ferry.DriveID, pc *pendingCopy, budget int, by string) error {
	st := &pc.state
	ts := now()
	grow := map[ferry.ItemID]int64{} // bytes to add to each copied folder
	read := make([][]copySource, len(st.Stack))
	ended := make([]bool, len(st.Stack)) // the last read found every child left
	for budget > 0 && len(st.Stack) > 0 {
		i := len(st.Stack) - 1
		if len(read[i]) == 0 {
			var kids []copySource
			if !ended[i] {
				// One more than the budget: a folder whose children all
				// fit is then known to be done without another read.
				var err error
				if kids, err = s.copySources(ctx, t, st.Stack[i].Src, st.Stack[i].After, budget+1); err != nil {
					return err
				}
				read[i], ended[i] = kids, len(kids) <= budget
			}
			if len(kids) == 0 {
				st.Stack, read, ended = st.Stack[:i], read[:i], ended[:i]
				continue
			}
		}
		k := read[i][0]
		read[i] = read[i][1:]
		cp := copyOf(&k.Item, drive, st.Stack[i].Dst, by, ts)
		if err := s.insertRow(ctx, t, cp); err != nil {
			return err
		}
		budget--
		st.Stack[i].After = k.key
		if cp.Folder {
			st.Stack = append(st.Stack, copyFrame{Src: k.ID, Dst: cp.ID})
			read, ended = append(read, nil), append(ended, false)
			continue
		}
		st.Bytes += cp.Size
		for _, f := range st.Stack {
			grow[f.Dst] += cp.Size
		}
	}
	// Folders whose last child this step copied are done: a copy that
	// ends with this step's budget appears in this step.
	for i := len(st.Stack) - 1; i >= 0 && len(read[i]) == 0 && ended[i]; i-- {
		st.Stack = st.Stack[:i]
	}
	for id, n := range grow {
		if n == 0 {
			continue
		}
		if _, err := t.exec(ctx, `UPDATE items SET size = size + ? WHERE id = ?`, n, string(id)); err != nil {
			return fmt.Errorf("sqlstore: size of %s: %w", id, err)
		}
	}
	return nil
}

// copySources reads up to limit children of the source folder whose name
// keys come after after, in name key order.
func (s *Store) copySources(ctx context.Context, t conn, folder ferry.ItemID, after string, limit int) ([]copySource, error) {
	rows, err := t.query(ctx, `SELECT id, name, name_key, folder, size, mime_type, qxh, sha1, sha256,
		COALESCE(blob_key, ''), fs_created, fs_modified, description
		FROM items WHERE parent_id = ? AND name_key > ? ORDER BY name_key LIMIT ?`, string(folder), after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: copy from %s: %w", folder, err)
	}
	defer rows.Close()
	var out []copySource
	for rows.Next() {
		var k copySource
		var fsCreated, fsModified int64
		if err := rows.Scan(&k.ID, &k.Name, &k.key, &k.Folder, &k.Size, &k.MimeType, &k.Hashes.QuickXor,
			&k.Hashes.SHA1, &k.Hashes.SHA256, &k.BlobKey, &fsCreated, &fsModified, &k.Description); err != nil {
			return nil, fmt.Errorf("sqlstore: copy from %s: %w", folder, err)
		}
		k.FSCreated, k.FSModified = fromMillis(fsCreated), fromMillis(fsModified)
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: copy from %s: %w", folder, err)
	}
	return out, nil
}

// saveCopy records where a copy that needs more steps stands and, for a
// job, its progress. A copy begun in this step holds from now on the
// source's size in the destination drive: QuotaExceeded, and nothing is
// written, if that does not fit.
func (s *Store) saveCopy(ctx context.Context, t conn, drive ferry.DriveID, pc *pendingCopy, own copyOwner) error {
	state, err := json.Marshal(pc.state)
	if err != nil {
		return fmt.Errorf("sqlstore: copy %s: state: %w", pc.id, err)
	}
	ts := millis(now())
	if pc.fresh {
		var room int64
		err := t.row(ctx, `SELECT quota - used - `+heldSQL+` FROM drives WHERE id = ?`,
			string(drive), ts, string(drive), string(drive)).Scan(&room)
		if err != nil {
			return fmt.Errorf("sqlstore: copy %s: room: %w", pc.id, err)
		}
		if room < pc.reserved {
			return errQuota()
		}
		_, err = t.exec(ctx, `INSERT INTO pending_copies (id, job, drive_id, top_id, reserved, state, updated)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, pc.id, own.job, string(drive), string(pc.state.Top), pc.reserved, string(state), ts)
		if err != nil {
			return fmt.Errorf("sqlstore: copy %s: %w", pc.id, err)
		}
	} else {
		_, err := t.exec(ctx, `UPDATE pending_copies SET state = ?, updated = ? WHERE id = ?`, string(state), ts, pc.id)
		if err != nil {
			return fmt.Errorf("sqlstore: copy %s: %w", pc.id, err)
		}
	}
	if !own.job {
		return nil
	}
	_, err = t.exec(ctx, `UPDATE ferry_jobs SET bytes = ?, total = ?, updated = ? WHERE id = ?`,
		pc.state.Bytes, pc.reserved, ts, own.id)
	if err != nil {
		return fmt.Errorf("sqlstore: copy %s: progress: %w", pc.id, err)
	}
	return nil
}

// publishCopy makes a copy whose walk is done appear: it applies the
// conflict behaviour to the top's name (settleClash, as a move would),
// charges the copy's bytes to the destination drive and its folders,
// gives the top its parent and name, and returns it. The copy's room is
// given back first, so that the charge does not count it twice.
func (s *Store) publishCopy(ctx context.Context, t conn, dstDrive ferry.DriveID, spec copySpec, pc *pendingCopy) (*ferry.Item, error) {
	src, err := s.item(ctx, t, spec.src)
	if err != nil {
		return nil, err
	}
	p, err := s.uncounted(ctx, t, spec.parent)
	if err != nil {
		return nil, err
	}
	if !p.Folder {
		return nil, ferry.Errorf(ferry.Invalid, "%q is a file, not a folder", p.Name)
	}
	top, err := s.item(ctx, t, pc.state.Top)
	if err != nil {
		return nil, err
	}
	name := top.Name
	other, err := s.child(ctx, t, p.ID, ferry.NameKey(name))
	if err != nil {
		return nil, err
	}
	if other != nil {
		if name, err = s.settleClash(ctx, t, p.ID, name, src, other, spec.conflict); err != nil {
			return nil, err
		}
	}
	if !pc.fresh {
		if _, err := t.exec(ctx, `DELETE FROM pending_copies WHERE id = ?`, pc.id); err != nil {
			return nil, fmt.Errorf("sqlstore: copy %s: %w", pc.id, err)
		}
	}
	if err := s.charge(ctx, t, dstDrive, p.ID, top.Size); err != nil {
		return nil, err
	}
	// Recorded as a move from nowhere (the top has no parent yet), which
	// delta answers with the whole subtree (collectChanges): the items
	// below the top were never recorded one by one.
	if err := s.recordMove(ctx, t, top); err != nil {
		return nil, err
	}
	_, err = t.exec(ctx, `UPDATE items SET parent_id = ?, name = ?, name_key = ? WHERE id = ?`,
		string(p.ID), name, ferry.NameKey(name), string(top.ID))
	if s.d.uniqueViolation(err) {
		return nil, errNameTaken(name) // unreachable under the drive lock
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: copy %s: publish: %w", pc.id, err)
	}
	return s.item(ctx, t, top.ID)
}

// DropJobCopy removes the hidden tree of the copy job jobID, a copy that
// will never appear because its job has ended otherwise (failed,
// cancelled), in transactions of at most the batch of items each,
// releasing the blob references its items took. Nothing of it was ever
// charged, and ending the job gave back the room it held. A job without
// such a tree is not an error; Conflict while the job has not ended, since
// its runner may still be building the tree.
func (s *Store) DropJobCopy(ctx context.Context, jobID string) error {
	return s.dropCopy(ctx, jobID, true)
}

// DropAbandonedCopies removes the hidden trees of copies that will never
// appear: those of jobs that have ended or no longer exist, and those of
// CopyItem calls (no job) that made no step since before (their process
// died). It reports how many it removed.
func (s *Store) DropAbandonedCopies(ctx context.Context, before time.Time) (int, error) {
	rows, err := s.c.query(ctx, `SELECT p.id FROM pending_copies p
		WHERE (p.job AND NOT EXISTS (SELECT 1 FROM ferry_jobs j WHERE j.id = p.id AND j.status NOT IN `+finalStatuses+`))
		OR (NOT p.job AND p.updated < ?)
		ORDER BY p.id`, millis(before))
	if err != nil {
		return 0, fmt.Errorf("sqlstore: abandoned copies: %w", err)
	}
	ids, err := scanStrings(rows, "abandoned copies")
	if err != nil {
		return 0, err
	}
	for i, id := range ids {
		if err := s.dropCopy(ctx, id, false); err != nil {
			return i, err
		}
	}
	return len(ids), nil
}

// dropCopy removes the hidden tree of the copy id and then its
// pending_copies row, one step of at most the batch at a time. With
// job, it refuses (Conflict) while the job has not ended.
func (s *Store) dropCopy(ctx context.Context, id string, job bool) error {
	for {
		done, err := s.dropStep(ctx, id, job)
		if err != nil || done {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// dropStep deletes up to the batch of the items of the hidden tree of the
// copy id (removeBelow) and reports whether the tree and the copy's row
// are gone.
func (s *Store) dropStep(ctx context.Context, id string, job bool) (done bool, err error) {
	var drive ferry.DriveID
	err = s.c.row(ctx, `SELECT drive_id FROM pending_copies WHERE id = ?`, id).Scan(&drive)
	if notFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("sqlstore: drop copy %s: %w", id, err)
	}
	err = s.tx(ctx, func(_ *sql.Tx, t conn) error {
		done = false
		if err := s.lockDrives(ctx, t, drive); err != nil {
			return err
		}
		var top ferry.ItemID
		err := t.row(ctx, `SELECT top_id FROM pending_copies WHERE id = ?`+s.d.forUpdate(), id).Scan(&top)
		if notFound(err) {
			done = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("sqlstore: drop copy %s: %w", id, err)
		}
		if job {
			var status ferry.JobStatus
			err := t.row(ctx, `SELECT status FROM ferry_jobs WHERE id = ?`, id).Scan(&status)
			if err != nil && !notFound(err) {
				return fmt.Errorf("sqlstore: drop copy %s: %w", id, err)
			}
			if err == nil && !status.Final() {
				return ferry.Errorf(ferry.Conflict, "the copy's job has not ended (%s)", status)
			}
		}
		gone, err := s.removeBelow(ctx, t, top, s.treeBatch(), nil)
		if err != nil || !gone {
			return err
		}
		if _, err := t.exec(ctx, `DELETE FROM pending_copies WHERE id = ?`, id); err != nil {
			return fmt.Errorf("sqlstore: drop copy %s: %w", id, err)
		}
		done = true
		return nil
	})
	return done, err
}
