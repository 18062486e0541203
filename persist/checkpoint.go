package persist

import (
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"sync"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// checkpointer copies committed WAL frames into the database file on a connection of its own,
// so that the writer neither copies them nor waits for a checkpoint's two fsyncs (issue 7:
// SQLite's automatic checkpoint, run inside the COMMIT that crossed 1000 frames, was 10-25% of
// the writer's CPU and held the acknowledgements of that batch behind the fsyncs).
//
// Invariants:
//   - The writer's connection never checkpoints on its own (wal_autocheckpoint = 0) while a
//     checkpointer exists; the checkpointer's connection runs only PASSIVE checkpoints, which
//     neither wait for nor block the writer. mu is held by whoever checkpoints, so the two
//     connections never contend for the checkpoint lock.
//   - The WAL stays bounded. A PASSIVE checkpoint cannot start the WAL over: only a write
//     transaction that begins when every frame has been copied does, and under load the writer
//     commits while the checkpointer copies. So once the WAL holds limits.reset frames, the
//     writer copies the few frames left (those committed during the last pass) itself, between
//     batches, and its next transaction restarts the WAL; at limits.max it waits for a running
//     pass to end and does so whatever is left.
//   - Only the writer goroutine reads the WAL index (index, readIndex); only the checkpointer
//     goroutine uses conn after Open.
//
// Design: after every commit the writer reads mxFrame and nBackfill from the WAL-index header
// in the -shm file (one pread; the layout is SQLite's cross-version file format,
// https://sqlite.org/walformat.html section 2.2) and wakes the checkpointer once limits.wake
// frames wait, the threshold of SQLite's own autocheckpoint. A header that does not read as
// expected turns the automatic checkpoint back on (fallBack).
// Rejected: RESTART checkpoints from the checkpointer (they take the write lock, and the
// writer then sleeps in the busy handler, a millisecond at least); a timer (it wakes an idle
// broker and is blind to the write rate).
type checkpointer struct {
	conn *sqlite.Conn
	// wake has room for one signal: a pass already due absorbs further ones.
	wake chan struct{}
	done chan struct{}
	mu   sync.Mutex

	// Owned by the writer goroutine.
	limits walLimits
	index  *os.File
	header [walIndexHeaderBytes]byte
	own    *sqlite.Stmt // PRAGMA wal_checkpoint(PASSIVE) on the writer's connection
	failed bool         // the last checkpoint failed (logged once until one succeeds)
}

// walLimits are the WAL lengths, in frames, at which the writer acts.
type walLimits struct {
	// wake: this many frames not yet copied wake the checkpointer.
	wake uint32
	// reset: from this WAL length on, the writer copies what the checkpointer left, so that
	// the WAL starts over.
	reset uint32
	// max: the writer waits for a running pass rather than let the WAL grow further.
	max uint32
}

// defaultWALLimits wake the checkpointer at SQLite's autocheckpoint threshold and start the WAL
// over at 16 MiB with 4 KiB pages (64 MiB at most).
func defaultWALLimits() walLimits { return walLimits{wake: 1000, reset: 4000, max: 16000} }

const (
	// The WAL-index header: two copies of the 48-byte WalIndexHdr, then WalCkptInfo, all in
	// the host's byte order.
	walIndexHeaderBytes = 136
	walIndexVersion     = 3007000
	offVersion          = 0
	offIsInit           = 12
	offMaxFrame         = 16
	offBackfill         = 96
)

// checkpointSQL copies every committed frame no reader still needs, without waiting.
const checkpointSQL = "PRAGMA wal_checkpoint(PASSIVE);"

// startCheckpointer opens the checkpointer's connection and turns the writer's automatic
// checkpoint off. Without WAL there is nothing to checkpoint; when the WAL index cannot be read,
// the writer keeps checkpointing as SQLite does by default. Either way it returns nil.
func (s *Store) startCheckpointer(limits walLimits) error {
	if !strings.EqualFold(s.cfg.SQLite.JournalMode, "WAL") {
		return nil
	}
	index, err := os.Open(s.file + "-shm")
	if err != nil {
		s.log.Warn("persist: WAL index unreadable; the writer checkpoints the WAL itself", "file", s.file, "err", err)
		return nil
	}
	c := &checkpointer{index: index, limits: limits, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if _, _, ok := c.readIndex(); !ok {
		index.Close()
		s.log.Warn("persist: WAL index not in the expected format; the writer checkpoints the WAL itself", "file", s.file)
		return nil
	}
	conn, err := sqlite.OpenConn(s.file, sqlite.OpenReadWrite)
	if err != nil {
		index.Close()
		return s.openError("open checkpoint connection to", err)
	}
	c.conn = conn
	for _, pragma := range []string{
		"PRAGMA busy_timeout = " + fmt.Sprint(s.cfg.SQLite.BusyTimeout) + ";",
		// A checkpoint syncs as its own connection's level says: the same as the writer's.
		"PRAGMA synchronous = " + s.cfg.SQLite.Synchronous + ";",
		"PRAGMA cache_size = 16;", // it reads frames, not pages: no cache to speak of
	} {
		if err := sqlitex.ExecuteTransient(conn, pragma, nil); err != nil {
			c.close()
			return s.openError("configure checkpoint connection to", err)
		}
	}
	if c.own, err = s.conn.Prepare(checkpointSQL); err != nil {
		c.close()
		return s.openError("prepare", err)
	}
	if err := sqlitex.ExecuteTransient(s.conn, "PRAGMA wal_autocheckpoint = 0;", nil); err != nil {
		c.close()
		return s.openError("configure", err)
	}
	s.ckpt = c
	go s.checkpointLoop(c)
	return nil
}

// checkpointLoop runs a pass per wake until wake is closed.
func (s *Store) checkpointLoop(c *checkpointer) {
	defer close(c.done)
	failed := false
	for range c.wake {
		c.mu.Lock()
		err := sqlitex.ExecuteTransient(c.conn, checkpointSQL, nil)
		c.mu.Unlock()
		if err != nil && !failed { // a failing disk fails every pass: say so once
			s.log.Warn("persist: WAL checkpoint failed; retrying after the next commits", "file", s.file, "err", err)
		}
		failed = err != nil
	}
}

// readIndex returns the WAL's last valid frame and how many frames are already copied, ok false
// when the header is not what SQLite writes.
func (c *checkpointer) readIndex() (maxFrame, backfilled uint32, ok bool) {
	h := c.header[:]
	if n, err := c.index.ReadAt(h, 0); n != len(h) || err != nil {
		return 0, 0, false
	}
	e := binary.NativeEndian
	if e.Uint32(h[offVersion:]) != walIndexVersion || h[offIsInit] != 1 {
		return 0, 0, false
	}
	return e.Uint32(h[offMaxFrame:]), e.Uint32(h[offBackfill:]), true
}

// tendWAL runs on the writer after each commit: it wakes the checkpointer when frames wait,
// and keeps the WAL bounded (see checkpointer).
func (s *Store) tendWAL() {
	c := s.ckpt
	if c == nil {
		return
	}
	maxFrame, backfilled, ok := c.readIndex()
	if !ok {
		s.fallBack()
		return
	}
	waiting := maxFrame - backfilled
	switch {
	case maxFrame >= c.limits.max:
		c.mu.Lock() // a pass under way ends first
		s.checkpointHere()
		c.mu.Unlock()
	case waiting >= c.limits.wake:
		select {
		case c.wake <- struct{}{}:
		default:
		}
	case maxFrame >= c.limits.reset && waiting > 0 && c.mu.TryLock():
		s.checkpointHere()
		c.mu.Unlock()
	}
}

// checkpointHere copies the WAL's remaining frames on the writer's connection; c.mu is held.
func (s *Store) checkpointHere() {
	c := s.ckpt
	err := step(c.own)
	switch {
	case err != nil && !c.failed:
		s.log.Warn("persist: WAL checkpoint failed; retrying after the next commits", "file", s.file, "err", err)
	case err == nil && c.failed:
		s.log.Info("persist: WAL checkpoint succeeded again", "file", s.file)
	}
	c.failed = err != nil
}

// fallBack hands checkpoints back to SQLite's automatic checkpoint on the writer's connection,
// when the WAL index stopped reading as expected.
func (s *Store) fallBack() {
	c := s.ckpt
	s.log.Warn("persist: WAL index unreadable; the writer checkpoints the WAL itself from now on", "file", s.file)
	if err := sqlitex.ExecuteTransient(s.conn, fmt.Sprintf("PRAGMA wal_autocheckpoint = %d;", c.limits.wake), nil); err != nil {
		s.log.Error("persist: re-enabling the automatic WAL checkpoint failed", "file", s.file, "err", err)
	}
	s.stopCheckpointer()
}

// stopCheckpointer ends the checkpointer goroutine and closes its connection; the writer's
// connection, closed after it, then copies what is left as SQLite does at the last close.
func (s *Store) stopCheckpointer() {
	c := s.ckpt
	if c == nil {
		return
	}
	s.ckpt = nil
	close(c.wake)
	<-c.done
	c.close()
}

func (c *checkpointer) close() {
	if c.own != nil {
		c.own.Finalize()
	}
	if c.conn != nil {
		c.conn.Close()
	}
	c.index.Close()
}
