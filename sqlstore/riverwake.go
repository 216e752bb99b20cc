package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"
)

// Waking River on SQLite.
//
// SQLite has no LISTEN/NOTIFY: River's SQLite driver writes its
// notifications (a job was inserted, a job is to be cancelled, the leader
// resigned) to the river_notification table, and its listener reads that
// table every 50 ms, forever, while River's producers look for new jobs on
// their own every FetchPollInterval. Ferry's River client runs in the same
// process as the store that queues its jobs, so the store wakes it
// directly instead: the listener here also reads river_notification, but
// only every riverNotificationPoll, and when the store commits a
// transaction that made River jobs available (InsertJob, the requeue and
// rescue of interrupted jobs) it wakes every listener of the store at once,
// which then tells River's producers of the queues with available jobs to
// fetch. A job queued by another process on the same database file (or by
// River itself: a snoozed job or a retry coming due) is seen through the
// table, within riverNotificationPoll, and at worst by the producers' own
// poll (RiverFetchPoll).

const (
	// riverNotificationPoll is how often the listener reads
	// river_notification.
	riverNotificationPoll = time.Second
	// riverFetchPollSQLite is RiverFetchPoll on SQLite: a backstop only.
	riverFetchPollSQLite = 5 * time.Second
	// riverFetchPollPostgres is RiverFetchPoll on PostgreSQL, where
	// River's driver over database/sql has no listener and polls.
	riverFetchPollPostgres = 100 * time.Millisecond
	// riverInsertTopic is the topic of River's insert notifications;
	// their payload names the queue.
	riverInsertTopic = "river_insert"
)

// RiverFetchPoll is how often River's producers must look for new jobs
// themselves: on SQLite the store wakes them when it makes jobs available,
// so they poll only as a backstop; on PostgreSQL they poll often enough
// that a job queued on any node starts within a fraction of a second.
func (s *Store) RiverFetchPoll() time.Duration {
	if s.d.postgres {
		return riverFetchPollPostgres
	}
	return riverFetchPollSQLite
}

// wakers are the River listeners of one store.
type wakers struct {
	mu  sync.Mutex
	chs map[chan struct{}]struct{}
}

func (w *wakers) add(ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.chs == nil {
		w.chs = map[chan struct{}]struct{}{}
	}
	w.chs[ch] = struct{}{}
}

func (w *wakers) remove(ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.chs, ch)
}

// wakeRiver tells the store's River listeners that jobs became available;
// call it after the commit that made them so.
func (s *Store) wakeRiver() {
	w := &s.wakers
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.chs {
		select {
		case ch <- struct{}{}:
		default: // a wake is pending already
		}
	}
}

// sqliteRiver is River's SQLite driver with the store's listener.
type sqliteRiver struct {
	*riversqlite.Driver
	s *Store
}

// GetExecutor runs River's two busiest writes, the fetch of available
// jobs and the batch that records finished ones, as members of the store's
// groups of transactions (group.go): there they share a commit with the
// store's writes and queue in process, where otherwise they would wait on
// the file lock, whose busy handler sleeps for up to 100 ms at a time and
// seldom finds the lock free while groups follow one another.
func (d *sqliteRiver) GetExecutor() riverdriver.Executor {
	return &groupedExecutor{Executor: d.Driver.GetExecutor(), d: d}
}

type groupedExecutor struct {
	riverdriver.Executor
	d *sqliteRiver
}

func (e *groupedExecutor) JobGetAvailable(ctx context.Context, params *riverdriver.JobGetAvailableParams) (*riverdriver.JobGetAvailableResult, error) {
	var res *riverdriver.JobGetAvailableResult
	err := e.d.s.tx(ctx, func(tx *sql.Tx, _ conn) error {
		var err error
		res, err = e.d.Driver.UnwrapExecutor(tx).JobGetAvailable(context.WithoutCancel(ctx), params)
		return err
	})
	return res, err
}

func (e *groupedExecutor) JobSetStateIfRunningMany(ctx context.Context, params *riverdriver.JobSetStateIfRunningManyParams) ([]*rivertype.JobRow, error) {
	var res []*rivertype.JobRow
	err := e.d.s.tx(ctx, func(tx *sql.Tx, _ conn) error {
		var err error
		res, err = e.d.Driver.UnwrapExecutor(tx).JobSetStateIfRunningMany(context.WithoutCancel(ctx), params)
		return err
	})
	if err == nil {
		e.d.s.wakeForRetries(res)
	}
	return res, err
}

// wakeForRetries has River woken when the jobs River just put back as
// available (a retry or a snooze due soon: River marks those available at
// once, with a later scheduled_at) come due; nothing else would tell River
// before its next poll.
func (s *Store) wakeForRetries(rows []*rivertype.JobRow) {
	var first time.Time
	for _, r := range rows {
		if r != nil && r.State == rivertype.JobStateAvailable && (first.IsZero() || r.ScheduledAt.Before(first)) {
			first = r.ScheduledAt
		}
	}
	if !first.IsZero() {
		time.AfterFunc(time.Until(first)+5*time.Millisecond, s.wakeRiver)
	}
}

func (d *sqliteRiver) GetListener(params *riverdriver.GetListenenerParams) riverdriver.Listener {
	return &riverListener{s: d.s, schema: params.Schema}
}

// riverListener implements riverdriver.Listener over river_notification,
// woken by the store (see above). Like River's own SQLite listener, it
// remembers the last notification ID it has read (SQLite's single writer
// makes IDs a safe cursor) and delivers to a topic only notifications newer
// than its subscription.
type riverListener struct {
	s      *Store
	schema string

	mu        sync.Mutex
	connected bool
	wake      chan struct{}
	lastID    int64
	topics    map[string]int64
	pending   []*riverdriver.Notification
}

func (l *riverListener) Connect(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.connected {
		return errors.New("sqlstore: river listener: connected already")
	}
	id, err := l.maxID(ctx)
	if err != nil {
		return err
	}
	l.lastID = id
	l.connected = true
	l.topics = map[string]int64{}
	l.wake = make(chan struct{}, 1)
	l.s.wakers.add(l.wake)
	return nil
}

func (l *riverListener) Close(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.connected {
		l.s.wakers.remove(l.wake)
	}
	l.connected = false
	l.pending, l.topics = nil, nil
	return nil
}

func (l *riverListener) table() string {
	if l.schema != "" {
		return l.schema + ".river_notification"
	}
	return "river_notification"
}

func (l *riverListener) maxID(ctx context.Context) (int64, error) {
	var id int64
	if err := l.s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM `+l.table()).Scan(&id); err != nil {
		return 0, fmt.Errorf("sqlstore: river listener: %w", err)
	}
	return id, nil
}

func (l *riverListener) Listen(ctx context.Context, topic string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.connected {
		return errors.New("sqlstore: river listener: not connected")
	}
	if _, ok := l.topics[topic]; ok {
		return nil
	}
	id, err := l.maxID(ctx)
	if err != nil {
		return err
	}
	l.topics[topic] = max(l.lastID, id)
	return nil
}

func (l *riverListener) Unlisten(_ context.Context, topic string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.connected {
		return errors.New("sqlstore: river listener: not connected")
	}
	delete(l.topics, topic)
	return nil
}

func (l *riverListener) Ping(ctx context.Context) error { return l.s.db.PingContext(ctx) }

func (l *riverListener) Schema() string { return l.schema }

// SetAfterConnectExec is for River's own tests; unused here.
func (l *riverListener) SetAfterConnectExec(string) {}

// WaitForNotification returns the next notification: one read from the
// table, or, when the store woke the listener, an insert notification for
// every queue that has jobs available.
func (l *riverListener) WaitForNotification(ctx context.Context) (*riverdriver.Notification, error) {
	l.mu.Lock()
	wake := l.wake
	l.mu.Unlock()
	t := time.NewTimer(riverNotificationPoll)
	defer t.Stop()
	woken := false
	for {
		if n, err := l.next(ctx, woken); n != nil || err != nil {
			if err != nil && ctx.Err() != nil {
				// River interrupts the wait by cancelling ctx; the
				// driver's own error for an interrupted query may not
				// say so.
				return nil, ctx.Err()
			}
			return n, err
		}
		woken = false
		t.Reset(riverNotificationPoll)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wake:
			woken = true
		case <-t.C:
		}
	}
}

// next returns a pending notification, after reading the table and, if
// woken, the queues with available jobs when none is pending.
func (l *riverListener) next(ctx context.Context, woken bool) (*riverdriver.Notification, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.connected {
		return nil, errors.New("sqlstore: river listener: not connected")
	}
	if len(l.pending) == 0 && len(l.topics) > 0 {
		if err := l.readLocked(ctx); err != nil {
			return nil, err
		}
		if _, ok := l.topics[riverInsertTopic]; ok && woken {
			if err := l.availableLocked(ctx); err != nil {
				return nil, err
			}
		}
	}
	if len(l.pending) == 0 {
		return nil, nil
	}
	n := l.pending[0]
	l.pending = l.pending[1:]
	return n, nil
}

// readLocked queues the table's notifications newer than lastID for the
// topics listened to.
func (l *riverListener) readLocked(ctx context.Context) error {
	rows, err := l.s.db.QueryContext(ctx, `SELECT id, topic, payload FROM `+l.table()+`
		WHERE id > ? ORDER BY id LIMIT 256`, l.lastID)
	if err != nil {
		return fmt.Errorf("sqlstore: river listener: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var topic, payload string
		if err := rows.Scan(&id, &topic, &payload); err != nil {
			return fmt.Errorf("sqlstore: river listener: %w", err)
		}
		l.lastID = id
		if start, ok := l.topics[topic]; ok && id > start {
			l.pending = append(l.pending, &riverdriver.Notification{Topic: topic, Payload: payload})
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlstore: river listener: %w", err)
	}
	return nil
}

// availableLocked queues an insert notification for every queue with
// jobs available now.
func (l *riverListener) availableLocked(ctx context.Context) error {
	rows, err := l.s.db.QueryContext(ctx, `SELECT DISTINCT queue FROM river_job WHERE state = 'available'`)
	if err != nil {
		return fmt.Errorf("sqlstore: river listener: %w", err)
	}
	queues, err := scanStrings(rows, "river listener")
	if err != nil {
		return err
	}
	for _, q := range queues {
		payload, err := json.Marshal(struct {
			Queue string `json:"queue"`
		}{q})
		if err != nil {
			return err
		}
		l.pending = append(l.pending, &riverdriver.Notification{Topic: riverInsertTopic, Payload: string(payload)})
	}
	return nil
}

// riverParkPollSQLite is RiverParkPoll on SQLite.
const riverParkPollSQLite = riverFetchPollSQLite

// RiverParkPoll is how often a River client that its queue stopped for
// being idle must look for work itself (RiverWorkIn), or 0 where it must
// not be stopped at all. On SQLite every job is queued, rescued or retried
// through the process that runs the store, which starts River again when
// it does; the poll is the same backstop as RiverFetchPoll, for a job that
// another process put in the file. On PostgreSQL other nodes queue jobs
// that only River's own poll finds, so River keeps running.
func (s *Store) RiverParkPoll() time.Duration {
	if s.d.postgres {
		return 0
	}
	return riverParkPollSQLite
}

// RiverWorkIn tells when River next has a job to work: how long until the
// earliest job that is running, available, scheduled or waiting for a
// retry is due (zero or less: now); ok is false when River has none.
func (s *Store) RiverWorkIn(ctx context.Context) (in time.Duration, ok bool, err error) {
	// Both engines compute the wait themselves, in seconds: River keeps
	// its timestamps as text on SQLite.
	untilFirst := `(julianday(MIN(scheduled_at)) - julianday('now')) * 86400.0`
	if s.d.postgres {
		untilFirst = `EXTRACT(EPOCH FROM MIN(scheduled_at) - now())::float8`
	}
	var n int64
	var secs sql.NullFloat64
	err = s.db.QueryRowContext(ctx, `SELECT count(*), `+untilFirst+` FROM river_job
		WHERE state IN ('running', 'available', 'scheduled', 'retryable')`).Scan(&n, &secs)
	if err != nil {
		return 0, false, fmt.Errorf("sqlstore: river work due: %w", err)
	}
	if n == 0 || !secs.Valid {
		return 0, false, nil
	}
	return time.Duration(secs.Float64 * float64(time.Second)), true, nil
}
