package persist

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/x0a1b/promptmq/conf"
)

// File names inside storage.data-dir.
const (
	DatabaseFile = "promptmq.db"
	LockFile     = "promptmq.lock"
)

var (
	// ErrClosed is passed to the callback of an operation submitted after Close.
	ErrClosed = errors.New("persist: store closed")
	// ErrLocked means another process holds the data directory.
	ErrLocked = errors.New("persist: data directory in use")
	// ErrCorrupt means the database file is not a readable SQLite database.
	ErrCorrupt = errors.New("persist: database unreadable or corrupt")
)

// Store is the durable state of one broker. Its methods are safe for concurrent use.
//
// Invariants: only the writer goroutine touches conn once Open has returned (recovery and cleanup
// run on it as operations, not beside it; the checkpointer has a connection of its own); every
// submitted operation's callback is called exactly once, after its effects committed (nil) or
// were rolled back (the error), on the completer goroutine, in commit order; operations
// submitted by one goroutine commit in submission order; an operation is atomic (all its rows
// or none).
//
// Design: group commit as in Pebble's commit pipeline, reduced to what one SQLite connection
// allows: producers send small op values on a buffered channel; the writer takes the first op,
// gathers what is already queued, up to batch-size (waiting up to batch-interval for more only
// when commits fsync and the writer had been idle), runs them all in one BEGIN IMMEDIATE ...
// COMMIT with statements prepared once, then hands the batch to the completer, which calls the
// callbacks while the writer commits the next batch. One fsync (FULL) or one WAL
// append (NORMAL) is shared by the whole batch, which is what makes durable QoS 1 fast. If any
// op of a batch fails, the batch is rolled back and each op is retried in its own transaction,
// so one bad op cannot fail its neighbours and no op half-applies.
// Rejected: a connection pool with a transaction per publish (one fsync per message, and SQLite
// serialises writers anyway), and savepoints per op inside the batch (a cost on every op to
// speed up only the rare failing batch).
type Store struct {
	log     *slog.Logger
	cfg     conf.Storage
	durable bool
	file    string
	lock    *os.File
	conn    *sqlite.Conn

	// mu orders Close against senders so no op is sent on a closed channel: senders hold it for
	// reading around the send, Close takes it for writing before closing ops.
	mu     sync.RWMutex
	closed bool
	ops    chan op

	// completions carries committed batches from the writer to the completer, free their
	// buffers back; writerDone is closed when both have finished.
	completions chan []op
	free        chan []op
	writerDone  chan struct{}
	cleanupStop chan struct{}
	cleanupDone chan struct{}

	// commitSyncs: each commit waits for an fsync (synchronous FULL or EXTRA, or a rollback
	// journal), which is what waiting batch-interval for company amortizes. With WAL and
	// synchronous NORMAL or OFF a commit is a WAL append costing its pages, and waiting only
	// delays acks whose publishers are waiting for them: the writer commits when it is free.
	commitSyncs bool

	nextID atomic.Uint64
	obs    observing

	batches, committed, failed atomic.Uint64

	// Owned by the writer goroutine.
	st      statements
	rows    []deliveryRow
	scratch []byte
	// single, segBuf, doneIDs: reused by the segment code (segments.go).
	single      []deliveryRow
	segBuf      []byte
	doneIDs     []uint64
	segs        segmentIndex
	segsChanged bool  // the open transaction changed segs
	commitTime  int64 // when the open transaction began, for Created 0 (created)
	// ckpt copies the WAL into the database beside the writer (checkpoint.go); nil without
	// WAL, or when the writer checkpoints itself.
	ckpt *checkpointer
}

// batchBuffers is how many batches can be on their way between the writer and the completer:
// one being committed while the callbacks of the one before run.
const batchBuffers = 2

// Open opens (creating if needed) the database in cfg.DataDir, locks the directory, applies and
// verifies the seven [storage.sqlite] PRAGMAs, migrates the schema and starts the writer and the
// cleanup loop. With cfg.DataDir == "" the Store keeps nothing and says so in the log.
func Open(cfg conf.Storage, log *slog.Logger) (*Store, error) {
	return openWith(cfg, log, defaultWALLimits())
}

// openWith is Open with the WAL lengths at which the writer acts given, so that tests reach them
// with a few writes.
func openWith(cfg conf.Storage, log *slog.Logger, limits walLimits) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{log: log, cfg: cfg}
	if cfg.DataDir == "" {
		log.Info("persist: storage.data-dir is empty: state is kept in memory only and nothing survives a restart")
		return s, nil
	}
	s.durable = true
	s.commitSyncs = commitSyncs(cfg.SQLite)
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("persist: create storage.data-dir %s: %w", cfg.DataDir, err)
	}
	lock, err := lockDir(filepath.Join(cfg.DataDir, LockFile))
	if err != nil {
		return nil, err
	}
	s.lock = lock
	s.file = filepath.Join(cfg.DataDir, DatabaseFile)
	if err := s.openConn(); err != nil {
		if s.conn != nil {
			s.conn.Close()
		}
		unlockDir(lock)
		return nil, err
	}
	if err := s.startCheckpointer(limits); err != nil {
		s.conn.Close()
		unlockDir(lock)
		return nil, err
	}
	batchSize := max(cfg.BatchSize, 1)
	s.ops = make(chan op, 4*batchSize)
	s.free = make(chan []op, batchBuffers)
	for range batchBuffers {
		s.free <- make([]op, 0, batchSize)
	}
	s.completions = make(chan []op, batchBuffers)
	s.writerDone = make(chan struct{})
	go s.writer()
	go s.completer()
	if cfg.Cleanup.CheckInterval > 0 {
		s.cleanupStop = make(chan struct{})
		s.cleanupDone = make(chan struct{})
		go s.cleanupLoop()
	}
	return s, nil
}

func (s *Store) openConn() error {
	conn, err := sqlite.OpenConn(s.file, sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		return s.openError("open", err)
	}
	s.conn = conn
	effective, err := applyPragmas(conn, s.cfg.SQLite, s.file)
	if err != nil {
		return s.openError("configure", err)
	}
	from, err := migrate(conn, s.file)
	if err != nil {
		return s.openError("migrate", err)
	}
	var maxID int64
	// Inline bodies have no messages row: the largest id is also sought per session, through the
	// deliveries key, so this costs a seek per session rather than a scan.
	err = sqlitex.ExecuteTransient(conn, `SELECT max((SELECT coalesce(max(id), 0) FROM messages),
			coalesce((SELECT max((SELECT max(message_id) FROM deliveries d WHERE d.client_id = s.client_id)) FROM sessions s), 0));`, &sqlitex.ExecOptions{
		ResultFunc: func(stmt *sqlite.Stmt) error { maxID = stmt.ColumnInt64(0); return nil },
	})
	if err != nil {
		return s.openError("read", err)
	}
	if s.segs, err = loadSegmentIndex(conn); err != nil {
		return s.openError("read", err)
	}
	for _, segs := range s.segs {
		maxID = max(maxID, int64(segs[len(segs)-1].last))
	}
	s.nextID.Store(uint64(maxID))
	if err := s.st.prepare(conn); err != nil {
		return s.openError("prepare statements", err)
	}
	args := []any{"file", s.file, "schema", SchemaVersion}
	if from != SchemaVersion {
		args = append(args, "migrated_from", from)
		if from > 0 {
			args = append(args, "kept_copy", backupFile(s.file, from))
		}
	}
	for _, p := range effective {
		args = append(args, p[0], p[1])
	}
	args = append(args, "batch_size", s.cfg.BatchSize, "batch_interval", s.cfg.BatchInterval)
	s.log.Info("persist: opened", args...)
	return nil
}

// openError explains a failure at open: which file, and for a corrupt or foreign file what to do.
// Nothing is deleted or re-created on the operator's behalf.
func (s *Store) openError(step string, err error) error {
	switch sqlite.ErrCode(err).ToPrimary() {
	case sqlite.ResultNotADB, sqlite.ResultCorrupt:
		return fmt.Errorf("persist: %s is not a readable SQLite database (%w: %w); nothing was changed: restore it from a backup, or move it aside to start with an empty store", s.file, ErrCorrupt, err)
	case sqlite.ResultCantOpen, sqlite.ResultReadOnly, sqlite.ResultIOErr:
		return fmt.Errorf("persist: cannot %s %s: %w; check that the file and storage.data-dir are readable and writable by this user", step, s.file, err)
	}
	if strings.HasPrefix(err.Error(), "persist:") {
		return err
	}
	return fmt.Errorf("persist: %s %s: %w", step, s.file, err)
}

// commitSyncs reports whether a commit waits for an fsync under c: every synchronous level above
// NORMAL does, and NORMAL does outside WAL (SQLite syncs the rollback journal on commit).
func commitSyncs(c conf.SQLite) bool {
	switch strings.ToUpper(c.Synchronous) {
	case "OFF", "0":
		return false
	case "NORMAL", "1":
		return !strings.EqualFold(c.JournalMode, "WAL")
	}
	return true
}

// applyPragmas sets the seven [storage.sqlite] PRAGMAs and reads each back: SQLite ignores an
// unknown or impossible setting silently (WAL on a filesystem without shared memory, mmap beyond
// the compiled limit), so a value that did not stick is an error naming it. It returns the
// effective values, to be logged.
func applyPragmas(conn *sqlite.Conn, c conf.SQLite, file string) ([][2]string, error) {
	levels := map[string]string{"OFF": "0", "NORMAL": "1", "FULL": "2", "EXTRA": "3", "DEFAULT": "0", "FILE": "1", "MEMORY": "2"}
	fk := "0"
	if c.ForeignKeys {
		fk = "1"
	}
	pragmas := []struct{ name, key, set, want string }{
		{"busy_timeout", "busy-timeout", strconv.Itoa(c.BusyTimeout), strconv.Itoa(c.BusyTimeout)},
		{"journal_mode", "journal-mode", c.JournalMode, strings.ToLower(c.JournalMode)},
		{"synchronous", "synchronous", c.Synchronous, levels[strings.ToUpper(c.Synchronous)]},
		{"cache_size", "cache-size", strconv.Itoa(c.CacheSize), strconv.Itoa(c.CacheSize)},
		{"temp_store", "temp-store", c.TempStore, levels[strings.ToUpper(c.TempStore)]},
		{"mmap_size", "mmap-size", strconv.FormatInt(c.MmapSize, 10), strconv.FormatInt(c.MmapSize, 10)},
		{"foreign_keys", "foreign-keys", fk, fk},
	}
	effective := make([][2]string, 0, len(pragmas))
	for _, p := range pragmas {
		if err := sqlitex.ExecuteTransient(conn, "PRAGMA "+p.name+" = "+p.set+";", nil); err != nil {
			return nil, fmt.Errorf("PRAGMA %s = %s (storage.sqlite.%s): %w", p.name, p.set, p.key, err)
		}
		got := ""
		err := sqlitex.ExecuteTransient(conn, "PRAGMA "+p.name+";", &sqlitex.ExecOptions{
			ResultFunc: func(stmt *sqlite.Stmt) error { got = stmt.ColumnText(0); return nil },
		})
		if err != nil {
			return nil, fmt.Errorf("read back PRAGMA %s (storage.sqlite.%s): %w", p.name, p.key, err)
		}
		if !strings.EqualFold(got, p.want) {
			return nil, fmt.Errorf("persist: %s: SQLite did not apply PRAGMA %s = %s (storage.sqlite.%s): it reports %q; choose a value this SQLite and filesystem support", file, p.name, p.set, p.key, got)
		}
		effective = append(effective, [2]string{p.name, got})
	}
	return effective, nil
}

// Durable reports whether the store writes to disk. When it does not, the engine may acknowledge
// at once and skip building operations.
func (s *Store) Durable() bool { return s.durable }

// File is the path of the database file, "" when memory-only.
func (s *Store) File() string { return s.file }

// NextMessageID returns a fresh message id, greater than every id stored when the Store opened.
func (s *Store) NextMessageID() uint64 { return s.nextID.Add(1) }

// WriterStats counts the writer's work since Open.
type WriterStats struct {
	Batches   uint64 // transactions committed by the group-commit path
	Committed uint64 // operations whose callback got nil
	Failed    uint64 // operations whose callback got an error
}

// Stats returns the writer's counters; safe to call at any time.
func (s *Store) Stats() WriterStats {
	return WriterStats{Batches: s.batches.Load(), Committed: s.committed.Load(), Failed: s.failed.Load()}
}

// Close stops the cleanup loop, lets the writer commit every operation already submitted (their
// callbacks fire), then closes the database and releases the directory lock. Operations submitted
// after Close get ErrClosed.
func (s *Store) Close() error {
	if !s.durable {
		return nil
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if s.cleanupStop != nil {
		close(s.cleanupStop)
		<-s.cleanupDone
	}
	s.mu.Lock()
	close(s.ops)
	s.mu.Unlock()
	<-s.writerDone
	s.stopCheckpointer()
	err := s.conn.Close()
	if lerr := unlockDir(s.lock); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("persist: close %s: %w", s.file, err)
	}
	s.log.Info("persist: closed", "file", s.file)
	return nil
}
