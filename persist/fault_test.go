package persist

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/x0a1b/promptmq/packets"
)

// execOnWriter runs SQL on the writer's connection between batches.
func execOnWriter(t *testing.T, s *Store, sql string) {
	t.Helper()
	if err := s.solo(func(c *sqlite.Conn) error { return sqlitex.ExecuteTransient(c, sql, nil) }); err != nil {
		t.Fatal(err)
	}
}

// A full disk (here: the database capped at its current size with max_page_count) fails the ops
// that need space, each with an error, and the store works again once space returns.
func TestDiskFullThenRecovers(t *testing.T) {
	s := open(t, testConfig(t.TempDir()))
	must(t, func(d func(error)) { s.SaveSession(&Session{ClientID: "c", Expiry: 60}, d) })
	var pages int
	if err := s.solo(func(c *sqlite.Conn) error {
		return sqlitex.ExecuteTransient(c, "PRAGMA page_count;", &sqlitex.ExecOptions{
			ResultFunc: func(q *sqlite.Stmt) error { pages = q.ColumnInt(0); return nil },
		})
	}); err != nil {
		t.Fatal(err)
	}
	execOnWriter(t, s, "PRAGMA max_page_count = "+strconv.Itoa(pages)+";")
	big := make([]byte, 64<<10)
	deliver := func(id uint64) error {
		m := &Message{ID: id, Topic: "t", Payload: big, Created: time.Now().UnixNano()}
		return wait(func(d func(error)) { s.AddDeliveries(m, []Delivery{{ClientID: "c", QoS: 1}}, d) })
	}
	err := deliver(s.NextMessageID())
	if sqlite.ErrCode(err).ToPrimary() != sqlite.ResultFull {
		t.Fatalf("write to a full database: %v, want SQLITE_FULL", err)
	}
	if st := s.Stats(); st.Failed != 1 {
		t.Errorf("stats %+v, want 1 failed", st)
	}
	execOnWriter(t, s, "PRAGMA max_page_count = 1073741823;")
	if err := deliver(s.NextMessageID()); err != nil {
		t.Fatalf("write after space returned: %v", err)
	}
	s = reopen(t, s)
	if _, stats := load(t, s); stats.Deliveries != 1 {
		t.Fatalf("%d deliveries on disk, want only the acknowledged one", stats.Deliveries)
	}
}

// One bad op in a batch fails alone; its neighbours commit and nothing of it remains.
func TestFailingOpDoesNotFailItsBatch(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.BatchSize = 4
	cfg.BatchInterval = time.Hour   // the batch closes when its fourth op arrives, never by time
	cfg.SQLite.Synchronous = "FULL" // commits fsync, so the idle writer waits for company
	s := open(t, cfg)
	errs := make([]chan error, 4)
	for i := range errs {
		errs[i] = make(chan error, 1)
	}
	now := time.Now().UnixNano()
	s.SaveSession(&Session{ClientID: "ok", Expiry: 60}, func(err error) { errs[0] <- err })
	// foreign_keys is on: a delivery to an unknown session violates it, after its message row
	// was inserted, which must be rolled back too.
	s.AddDeliveries(&Message{ID: 1, Topic: "t", Created: now}, []Delivery{{ClientID: "nobody"}}, func(err error) { errs[1] <- err })
	s.AddDeliveries(&Message{ID: 2, Topic: "t", Created: now}, []Delivery{{ClientID: "ok"}}, func(err error) { errs[2] <- err })
	s.SaveRetained(&Message{Topic: "r"}, func(err error) { errs[3] <- err })
	for i, want := range []bool{false, true, false, false} {
		if err := <-errs[i]; (err != nil) != want {
			t.Errorf("op %d: error %v, want failure %v", i, err, want)
		}
	}
	if st := s.Stats(); st.Committed != 3 || st.Failed != 1 {
		t.Errorf("stats %+v", st)
	}
	s = reopen(t, s)
	got, stats := load(t, s)
	if stats.Messages != 1 || len(got.Deliveries) != 1 || got.Deliveries[0].MessageID != 2 || stats.Retained != 1 {
		t.Errorf("recovered %+v %+v", got, stats)
	}
}

func TestRecoveryDiscardsExpired(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Cleanup.MaxMessageAge = time.Hour
	s := open(t, cfg)
	now := time.Now().UnixNano()
	past := now - int64(time.Minute)
	must(t, func(d func(error)) { s.SaveSession(&Session{ClientID: "gone", Expiry: 1, ExpiresAt: past}, d) })
	must(t, func(d func(error)) {
		s.SaveSession(&Session{ClientID: "kept", Expiry: 60, ExpiresAt: now + int64(time.Hour)}, d)
	})
	must(t, func(d func(error)) { s.SaveSubscription(Subscription{ClientID: "gone", Filter: "a"}, d) })
	must(t, func(d func(error)) { s.AddInbound("gone", 1, d) })
	both := []Delivery{{ClientID: "gone"}, {ClientID: "kept"}}
	must(t, func(d func(error)) { s.AddDeliveries(&Message{ID: 1, Topic: "fresh", Created: now}, both, d) })
	must(t, func(d func(error)) {
		s.AddDeliveries(&Message{ID: 2, Topic: "old", Created: now - int64(2*time.Hour)}, []Delivery{{ClientID: "kept"}}, d)
	})
	must(t, func(d func(error)) {
		s.AddDeliveries(&Message{ID: 3, Topic: "expired", Created: now, Expires: past}, []Delivery{{ClientID: "kept"}}, d)
	})
	must(t, func(d func(error)) { s.SaveRetained(&Message{Topic: "r/expired", Expires: past}, d) })
	must(t, func(d func(error)) { s.SaveRetained(&Message{Topic: "r/kept", Expires: now + int64(time.Hour)}, d) })
	s = reopen(t, s)
	got, stats := load(t, s)
	if _, ok := got.Sessions["gone"]; ok || len(got.Sessions) != 1 || len(got.Subscriptions) != 0 || len(got.Inbound) != 0 {
		t.Errorf("expired session survived: %+v", got)
	}
	if len(got.Deliveries) != 1 || got.Deliveries[0].MessageID != 1 || stats.Messages != 1 {
		t.Errorf("deliveries %+v, stats %+v", got.Deliveries, stats)
	}
	if _, ok := got.Retained["r/kept"]; !ok || len(got.Retained) != 1 {
		t.Errorf("retained %+v", got.Retained)
	}
	if stats.ExpiredSessions != 1 || stats.ExpiredMessages != 2 || stats.ExpiredRetained != 1 {
		t.Errorf("stats %+v", stats)
	}
}

func TestCleanup(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Cleanup.MaxMessageAge = time.Hour
	cfg.Cleanup.BatchSize = 2
	s := open(t, cfg)
	now := time.Now()
	at := func(d time.Duration) int64 { return now.Add(d).UnixNano() }
	for i := range 3 {
		id := "expiring" + strconv.Itoa(i)
		must(t, func(d func(error)) { s.SaveSession(&Session{ClientID: id, Expiry: 60, ExpiresAt: at(time.Minute)}, d) })
		must(t, func(d func(error)) { s.SaveSubscription(Subscription{ClientID: id, Filter: "f"}, d) })
	}
	must(t, func(d func(error)) { s.SaveSession(&Session{ClientID: "live", Expiry: NeverExpires}, d) })
	for i := range 3 {
		m := &Message{ID: s.NextMessageID(), Topic: "aged", Created: at(time.Duration(i) * time.Minute)}
		must(t, func(d func(error)) { s.AddDeliveries(m, []Delivery{{ClientID: "live"}, {ClientID: "expiring0"}}, d) })
	}
	m := &Message{ID: s.NextMessageID(), Topic: "expiring", Created: at(2 * time.Hour), Expires: at(time.Minute)}
	must(t, func(d func(error)) { s.AddDeliveries(m, []Delivery{{ClientID: "live"}}, d) })
	must(t, func(d func(error)) { s.SaveRetained(&Message{Topic: "r", Expires: at(time.Minute)}, d) })
	fresh := &Message{ID: s.NextMessageID(), Topic: "fresh", Created: at(2 * time.Hour)}
	must(t, func(d func(error)) { s.AddDeliveries(fresh, []Delivery{{ClientID: "live"}}, d) })

	// Nothing is due yet.
	if r, err := s.Cleanup(now); err != nil || r != (CleanupResult{}) {
		t.Fatalf("early cleanup: %+v, %v", r, err)
	}
	later := now.Add(2*time.Hour + 30*time.Minute)
	var total CleanupResult
	passes := 0
	for {
		r, err := s.Cleanup(later)
		if err != nil {
			t.Fatal(err)
		}
		passes++
		total.Sessions += r.Sessions
		total.Messages += r.Messages
		total.Retained += r.Retained
		if !r.More {
			break
		}
	}
	if total.Sessions != 3 || total.Messages != 4 || total.Retained != 1 || passes < 2 {
		t.Errorf("cleanup removed %+v in %d passes", total, passes)
	}
	s = reopen(t, s)
	got, stats := load(t, s)
	if len(got.Sessions) != 1 || stats.Subscriptions != 0 || stats.Messages != 1 || len(got.Deliveries) != 1 || stats.Retained != 0 {
		t.Errorf("after cleanup: %+v %+v", got, stats)
	}
}

// The loop runs passes on its own every check-interval and stops with Close.
func TestCleanupLoop(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Cleanup.CheckInterval = time.Millisecond
	s := open(t, cfg)
	must(t, func(d func(error)) { s.SaveRetained(&Message{Topic: "r", Expires: 1}, d) })
	for {
		var n int
		if err := s.solo(func(c *sqlite.Conn) error {
			return sqlitex.ExecuteTransient(c, "SELECT count(*) FROM retained;", &sqlitex.ExecOptions{
				ResultFunc: func(q *sqlite.Stmt) error { n = q.ColumnInt(0); return nil },
			})
		}); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		runtime.Gosched()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPropertiesRoundTrip(t *testing.T) {
	var p packets.Properties
	p.Set(packets.PropPayloadFormat)
	p.PayloadFormat = 1
	p.Set(packets.PropContentType)
	p.ContentType = []byte("text/plain")
	p.Set(packets.PropResponseTopic)
	p.ResponseTopic = []byte("reply/here")
	p.Set(packets.PropCorrelationData)
	p.CorrelationData = []byte{0, 1, 2}
	p.Set(packets.PropUserProperty)
	p.User = []packets.UserProperty{{Key: []byte("k"), Value: []byte("v")}, {Key: []byte("k"), Value: nil}}
	p.Set(packets.PropMessageExpiry) // not forwardable as is: dropped
	p.MessageExpiry = 5
	blob := AppendProperties(nil, &p)
	var got packets.Properties
	if err := DecodeProperties(blob, &got); err != nil {
		t.Fatal(err)
	}
	if again := AppendProperties(nil, &got); string(again) != string(blob) {
		t.Errorf("re-encoded %x, want %x", again, blob)
	}
	if got.Has(packets.PropMessageExpiry) || string(got.ContentType) != "text/plain" || len(got.User) != 2 || got.PayloadFormat != 1 {
		t.Errorf("decoded %+v", got)
	}
	for _, bad := range [][]byte{{0x01}, {0x03, 0}, {0x03, 0, 5, 'a'}, {0x26, 0, 1, 'k'}, {0x26, 0, 1, 'k', 0}, {0x02, 0, 0, 0, 1}} {
		var p packets.Properties
		if err := DecodeProperties(bad, &p); err == nil {
			t.Errorf("DecodeProperties(%x) accepted", bad)
		}
	}
}

func FuzzDecodeProperties(f *testing.F) {
	f.Add([]byte{0x01, 1, 0x03, 0, 1, 'a', 0x26, 0, 1, 'k', 0, 1, 'v'})
	f.Add([]byte{0x09, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p packets.Properties
		if DecodeProperties(b, &p) != nil {
			return
		}
		again := AppendProperties(nil, &p)
		var q packets.Properties
		if err := DecodeProperties(again, &q); err != nil {
			t.Fatalf("re-decode of %x: %v", again, err)
		}
		if string(AppendProperties(nil, &q)) != string(again) {
			t.Fatalf("encoding of %x is not stable", b)
		}
	})
}

func TestSubIDsCodec(t *testing.T) {
	ids := []uint32{1, 127, 128, 268435455}
	got, err := decodeSubIDs(appendSubIDs(nil, ids))
	if err != nil || fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	if _, err := decodeSubIDs([]byte{0x80}); err == nil {
		t.Error("truncated varint accepted")
	}
}

// crashChildEnv makes the test binary a writer that a parent kills with SIGKILL.
const crashChildEnv = "PERSIST_CRASH_CHILD_DIR"

// TestCrashChild is not a test of its own: run by TestCrashConsistency in a subprocess, it writes
// until killed and prints the id of every delivery whose callback reported it committed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("helper process for TestCrashConsistency")
	}
	signal.Ignore(syscall.SIGPIPE)
	cfg := testConfig(dir)
	cfg.BatchSize = 64
	s, err := Open(cfg, nil)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	if err := wait(func(d func(error)) { s.SaveSession(&Session{ClientID: "sub", Expiry: NeverExpires}, d) }); err != nil {
		fmt.Println("session:", err)
		os.Exit(1)
	}
	out := bufio.NewWriter(os.Stdout)
	acked := make(chan uint64, 1024)
	go func() {
		for id := range acked {
			fmt.Fprintln(out, id)
			if len(acked) == 0 {
				out.Flush()
			}
		}
	}()
	payload := make([]byte, 64)
	for {
		m := &Message{ID: s.NextMessageID(), Topic: "crash/test", Payload: payload, QoS: 1, Created: time.Now().UnixNano()}
		s.AddDeliveries(m, []Delivery{{ClientID: "sub", QoS: 1}}, func(err error) {
			if err == nil {
				acked <- m.ID
			}
		})
	}
}

// TestCrashConsistency kills a writing process with SIGKILL mid-stream, several times, and checks
// that every delivery the writer acknowledged is on disk after reopening (synchronous NORMAL + WAL).
func TestCrashConsistency(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		t.Skip("in the helper process")
	}
	dir := t.TempDir()
	acked := map[uint64]bool{}
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(stdout)
		n := 0
		for n < 2000 && lines.Scan() {
			id, err := strconv.ParseUint(strings.TrimSpace(lines.Text()), 10, 64)
			if err != nil {
				t.Fatalf("round %d: child said %q", round, lines.Text())
			}
			acked[id] = true
			n++
		}
		cmd.Process.Signal(syscall.SIGKILL)
		// Acknowledgements already in the pipe were reported before the kill: they count too.
		for lines.Scan() {
			if id, err := strconv.ParseUint(strings.TrimSpace(lines.Text()), 10, 64); err == nil {
				acked[id] = true
			}
		}
		cmd.Wait()
		if n < 2000 {
			t.Fatalf("round %d: child stopped after %d acknowledgements", round, n)
		}
	}
	s := open(t, testConfig(dir))
	got, _ := load(t, s)
	onDisk := map[uint64]bool{}
	for _, d := range got.Deliveries {
		onDisk[d.MessageID] = true
	}
	lost := 0
	for id := range acked {
		if !onDisk[id] {
			lost++
		}
	}
	t.Logf("%d acknowledged, %d on disk, lost %d", len(acked), len(onDisk), lost)
	if lost != 0 {
		t.Fatalf("lost %d acknowledged deliveries", lost)
	}
	if _, err := os.Stat(filepath.Join(dir, LockFile)); err != nil {
		t.Error(err)
	}
}
