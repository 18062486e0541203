package persist

import (
	"sync"
	"testing"
	"time"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// walWatch records, after every commit, the WAL's length and copied frames as the writer sees
// them. Its fields are written on the writer goroutine and read after the writes completed.
type walWatch struct {
	mu                  sync.Mutex
	longest             uint32 // the most frames the WAL held after a commit
	restarts            int    // commits after which the WAL was shorter than after the one before
	copiedBeside        bool   // frames were found copied that the writer had not copied itself
	last                uint32
	unreadable, commits int
}

func watchWAL(t *testing.T, s *Store) *walWatch {
	t.Helper()
	if s.ckpt == nil {
		t.Fatal("no checkpointer with journal-mode WAL")
	}
	w := &walWatch{}
	s.SetBatchObserver(func(int, time.Duration) {
		// On the writer goroutine, between its commit and tendWAL: the checkpointer's
		// header buffer is the writer's to use.
		maxFrame, backfilled, ok := s.ckpt.readIndex()
		w.mu.Lock()
		defer w.mu.Unlock()
		w.commits++
		if !ok {
			w.unreadable++
			return
		}
		w.longest = max(w.longest, maxFrame)
		if maxFrame < w.last {
			w.restarts++
		}
		w.last = maxFrame
		if backfilled > 0 {
			w.copiedBeside = true
		}
	})
	t.Cleanup(func() { s.SetBatchObserver(nil) })
	return w
}

// addSingles stores n single-recipient deliveries to clientID, all submitted at once when
// together is set (the writer under load), else each after the previous one committed.
func addSingles(t *testing.T, s *Store, clientID string, n int, together bool) {
	t.Helper()
	payload := make([]byte, 200)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		m := &Message{ID: s.NextMessageID(), Topic: "t/wal", Payload: payload, QoS: 1}
		ds := []Delivery{{ClientID: clientID, QoS: 1}}
		if !together {
			if err := wait(func(done func(error)) { s.AddDeliveries(m, ds, done) }); err != nil {
				t.Fatal(err)
			}
			continue
		}
		wg.Add(1)
		s.AddDeliveries(m, ds, func(err error) {
			if err != nil {
				errs <- err
			}
			wg.Done()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestCheckpointerKeepsWALBounded: with the checkpoint beside the writer, the WAL is still
// copied into the database and started over, under load (where the checkpointer never catches
// up by itself) as under light load, and nothing written is lost on the way.
func TestCheckpointerKeepsWALBounded(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.BatchSize = 16 // a batch adds a few frames at most
	limits := walLimits{wake: 8, reset: 32, max: 64}
	s, err := openWith(cfg, nil, limits)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	must(t, func(d func(error)) { s.SaveSession(&Session{ClientID: "c", Expiry: NeverExpires}, d) })
	w := watchWAL(t, s)

	addSingles(t, s, "c", 3000, true)
	addSingles(t, s, "c", 300, false)

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.unreadable > 0 {
		t.Fatalf("WAL index unreadable after %d of %d commits", w.unreadable, w.commits)
	}
	// A batch of 16 deliveries of 200 bytes fills one or two pages and their parents.
	const batchFrames = 16
	if w.longest > limits.max+batchFrames {
		t.Errorf("WAL reached %d frames, bound %d + %d", w.longest, limits.max, batchFrames)
	}
	t.Logf("commits %d, longest WAL %d frames, restarts %d", w.commits, w.longest, w.restarts)
	if w.restarts == 0 || !w.copiedBeside {
		t.Errorf("WAL restarted %d times, copied frames seen %v: checkpoints did not run", w.restarts, w.copiedBeside)
	}
	s = reopen(t, s)
	n := 0
	if _, err := s.Load(Recovery{Delivery: func(Delivery, *Message) error { n++; return nil }}); err != nil {
		t.Fatal(err)
	}
	if n != 3300 {
		t.Fatalf("recovered %d deliveries, stored 3300", n)
	}
}

// TestCheckpointerFallBack: when the WAL index stops reading as expected, the writer's own
// automatic checkpoint takes over and writes go on.
func TestCheckpointerFallBack(t *testing.T) {
	s := open(t, testConfig(t.TempDir()))
	if s.ckpt == nil {
		t.Fatal("no checkpointer with journal-mode WAL")
	}
	autocheckpoint := -1
	err := s.solo(func(conn *sqlite.Conn) error {
		s.fallBack()
		return sqlitex.ExecuteTransient(conn, "PRAGMA wal_autocheckpoint;", &sqlitex.ExecOptions{
			ResultFunc: func(q *sqlite.Stmt) error { autocheckpoint = q.ColumnInt(0); return nil },
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if autocheckpoint != int(defaultWALLimits().wake) {
		t.Fatalf("wal_autocheckpoint = %d after falling back, want %d", autocheckpoint, defaultWALLimits().wake)
	}
	if s.ckpt != nil {
		t.Fatal("checkpointer still set after falling back")
	}
	must(t, func(d func(error)) { s.SaveSession(&Session{ClientID: "c", Expiry: NeverExpires}, d) })
	addSingles(t, s, "c", 10, true)
}

// TestCheckpointerNotWithoutWAL: a rollback journal has nothing to checkpoint.
func TestCheckpointerNotWithoutWAL(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.SQLite.JournalMode = "DELETE"
	s := open(t, cfg)
	if s.ckpt != nil {
		t.Fatal("checkpointer started with journal-mode DELETE")
	}
	must(t, func(d func(error)) { s.SaveSession(&Session{ClientID: "c", Expiry: NeverExpires}, d) })
}

// TestCallbacksDoNotHoldTheWriter: while one batch's callback runs, the writer commits the next
// batch; callbacks still run in commit order.
func TestCallbacksDoNotHoldTheWriter(t *testing.T) {
	s := open(t, testConfig(t.TempDir()))
	committed := make(chan int, 16)
	s.SetBatchObserver(func(ops int, _ time.Duration) { committed <- ops })
	release := make(chan struct{})
	var order []string
	var mu sync.Mutex
	record := func(name string) { mu.Lock(); order = append(order, name); mu.Unlock() }
	firstDone, secondDone := make(chan struct{}), make(chan struct{})
	s.SaveSession(&Session{ClientID: "a", Expiry: NeverExpires}, func(err error) {
		if err != nil {
			t.Error(err)
		}
		<-release
		record("a")
		close(firstDone)
	})
	awaitCommit(t, committed)
	s.SaveSession(&Session{ClientID: "b", Expiry: NeverExpires}, func(err error) {
		if err != nil {
			t.Error(err)
		}
		record("b")
		close(secondDone)
	})
	awaitCommit(t, committed) // the first callback is still blocked
	select {
	case <-secondDone:
		t.Fatal("second callback ran before the first")
	default:
	}
	close(release)
	<-firstDone
	<-secondDone
	if len(order) != 2 || order[0] != "a" || order[1] != "b" {
		t.Fatalf("callbacks ran in order %v, want [a b]", order)
	}
}

func awaitCommit(t *testing.T, committed <-chan int) {
	t.Helper()
	select {
	case <-committed:
	case <-time.After(10 * time.Second):
		t.Fatal("no commit within 10 s")
	}
}
