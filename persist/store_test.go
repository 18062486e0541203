package persist

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/x0a1b/promptmq/conf"
)

// testConfig is the default storage configuration in dir, without the cleanup loop (tests call
// Cleanup themselves) and with no batch wait (tests wait on callbacks, not on time).
func testConfig(dir string) conf.Storage {
	c := conf.Default().Storage
	c.DataDir = dir
	c.BatchInterval = 0
	c.Cleanup.CheckInterval = 0
	return c
}

func open(t testing.TB, cfg conf.Storage) *Store {
	t.Helper()
	s, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// wait submits through fn and returns the callback's error.
func wait(fn func(done func(error))) error {
	ch := make(chan error, 1)
	fn(func(err error) { ch <- err })
	return <-ch
}

func must(t testing.TB, fn func(done func(error))) {
	t.Helper()
	if err := wait(fn); err != nil {
		t.Fatal(err)
	}
}

// state is everything Load streams, gathered for comparison.
type state struct {
	Sessions      map[string]Session
	Subscriptions []Subscription
	Deliveries    []Delivery
	Messages      map[uint64]Message
	Inbound       []InboundQoS2
	Retained      map[string]Message
}

func load(t testing.TB, s *Store) (state, LoadStats) {
	t.Helper()
	st := state{Sessions: map[string]Session{}, Messages: map[uint64]Message{}, Retained: map[string]Message{}}
	stats, err := s.Load(Recovery{
		Session:      func(x Session) error { st.Sessions[x.ClientID] = x; return nil },
		Subscription: func(x Subscription) error { st.Subscriptions = append(st.Subscriptions, x); return nil },
		Delivery: func(d Delivery, m *Message) error {
			if d.MessageID != m.ID {
				t.Errorf("delivery %d got message %d", d.MessageID, m.ID)
			}
			st.Deliveries = append(st.Deliveries, d)
			st.Messages[m.ID] = *m
			return nil
		},
		Inbound:  func(x InboundQoS2) error { st.Inbound = append(st.Inbound, x); return nil },
		Retained: func(m Message) error { st.Retained[m.Topic] = m; return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return st, stats
}

func reopen(t testing.TB, s *Store) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return open(t, s.cfg)
}

func TestRoundTrip(t *testing.T) {
	s := open(t, testConfig(t.TempDir()))
	will := &Will{Message: Message{Topic: "will/a", Payload: []byte("gone"), QoS: 1, Retain: true, Properties: []byte{1, 1}, Created: 5}, Delay: 30}
	sessA := &Session{ClientID: "a", Expiry: 3600, Will: will}
	sessB := &Session{ClientID: "b", Expiry: NeverExpires}
	m1 := &Message{ID: s.NextMessageID(), Topic: "t/1", Payload: []byte("one"), QoS: 1, Created: time.Now().UnixNano()}
	m2 := &Message{ID: s.NextMessageID(), Topic: "t/2", Payload: []byte("two"), QoS: 2, Properties: []byte{3, 0, 1, 'x'}, Created: time.Now().UnixNano()}
	retained := &Message{Topic: "r/1", Payload: []byte("kept"), QoS: 1, Retain: true, Created: 7}
	steps := []struct {
		name string
		fn   func(done func(error))
	}{
		{"session a", func(d func(error)) { s.SaveSession(sessA, d) }},
		{"session b", func(d func(error)) { s.SaveSession(sessB, d) }},
		{"sub a", func(d func(error)) {
			s.SaveSubscription(Subscription{ClientID: "a", Filter: "t/#", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, ID: 9}, d)
		}},
		{"sub a2", func(d func(error)) { s.SaveSubscription(Subscription{ClientID: "a", Filter: "x", QoS: 0}, d) }},
		{"unsub a2", func(d func(error)) { s.DeleteSubscription("a", "x", d) }},
		{"sub b", func(d func(error)) { s.SaveSubscription(Subscription{ClientID: "b", Filter: "t/+", QoS: 1}, d) }},
		{"deliver m1", func(d func(error)) {
			s.AddDeliveries(m1, []Delivery{{ClientID: "a", QoS: 1, SubIDs: []uint32{9, 300000}}, {ClientID: "b", QoS: 1}}, d)
		}},
		{"deliver m2", func(d func(error)) { s.AddDeliveries(m2, []Delivery{{ClientID: "a", QoS: 2, Retain: true}}, d) }},
		{"m1 sent to a", func(d func(error)) { s.UpdateDelivery("a", m1.ID, 17, Sent, d) }},
		{"m2 released to a", func(d func(error)) { s.UpdateDelivery("a", m2.ID, 18, Released, d) }},
		{"m1 acked by b", func(d func(error)) { s.DeleteDelivery("b", m1.ID, d) }},
		{"inbound a 5", func(d func(error)) { s.AddInbound("a", 5, d) }},
		{"inbound a 6", func(d func(error)) { s.AddInbound("a", 6, d) }},
		{"inbound a 6 again", func(d func(error)) { s.AddInbound("a", 6, d) }},
		{"pubrel a 5", func(d func(error)) { s.DeleteInbound("a", 5, d) }},
		{"retain", func(d func(error)) { s.SaveRetained(retained, d) }},
		{"retain other", func(d func(error)) { s.SaveRetained(&Message{Topic: "r/2", Payload: []byte("x")}, d) }},
		{"retain replace", func(d func(error)) { s.SaveRetained(&Message{Topic: "r/2", Payload: []byte("y"), Expires: 1 << 62}, d) }},
		{"retain clear", func(d func(error)) { s.DeleteRetained("r/1", d) }},
	}
	for _, step := range steps {
		if err := wait(step.fn); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
	}
	must(t, func(d func(error)) { s.AddDeliveries(&Message{ID: s.NextMessageID(), Topic: "nobody"}, nil, d) })
	s = reopen(t, s)
	got, stats := load(t, s)

	wantA := *sessA
	wantA.ExpiresAt = got.Sessions["a"].ExpiresAt // connected at the stop: the clock starts at Load
	if wantA.ExpiresAt < time.Now().Add(3599*time.Second).UnixNano() {
		t.Errorf("session a expires at %d, want about an hour from now", wantA.ExpiresAt)
	}
	want := state{
		Sessions: map[string]Session{"a": wantA, "b": *sessB},
		Subscriptions: []Subscription{
			{ClientID: "a", Filter: "t/#", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, ID: 9},
			{ClientID: "b", Filter: "t/+", QoS: 1},
		},
		Deliveries: []Delivery{
			{ClientID: "a", MessageID: m1.ID, QoS: 1, PacketID: 17, State: Sent, SubIDs: []uint32{9, 300000}},
			{ClientID: "a", MessageID: m2.ID, QoS: 2, PacketID: 18, State: Released, Retain: true},
		},
		Messages: map[uint64]Message{m1.ID: *m1, m2.ID: *m2},
		Inbound:  []InboundQoS2{{"a", 6}},
		Retained: map[string]Message{"r/2": {Topic: "r/2", Payload: []byte("y"), Retain: true, Expires: 1 << 62}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("recovered\n%+v\nwant\n%+v", got, want)
	}
	if stats.Sessions != 2 || stats.Messages != 2 || stats.Retained != 1 || stats.Took <= 0 {
		t.Errorf("stats %+v", stats)
	}
	if id := s.NextMessageID(); id <= m2.ID {
		t.Errorf("NextMessageID after reopen = %d, want > %d", id, m2.ID)
	}

	// The last delivery of a message takes its body; a session's end takes its rows.
	must(t, func(d func(error)) { s.DeleteDelivery("a", m1.ID, d) })
	must(t, func(d func(error)) { s.DeleteSession("a", d) })
	s = reopen(t, s)
	got, stats = load(t, s)
	if len(got.Sessions) != 1 || len(got.Subscriptions) != 1 || len(got.Deliveries) != 0 || len(got.Inbound) != 0 || stats.Messages != 0 {
		t.Errorf("after deleting session a: %+v %+v", got, stats)
	}
}

func TestMemoryOnly(t *testing.T) {
	var logged bytes.Buffer
	s, err := Open(conf.Storage{}, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if s.Durable() || s.File() != "" {
		t.Fatal("memory-only store claims to be durable")
	}
	if !strings.Contains(logged.String(), "memory only") {
		t.Errorf("start-up log does not say memory only: %s", logged.String())
	}
	calls := 0
	s.SaveRetained(&Message{Topic: "a"}, func(err error) {
		if err != nil {
			t.Error(err)
		}
		calls++
	})
	if calls != 1 {
		t.Errorf("callback ran %d times before return, want 1", calls)
	}
	if st, err := s.Load(Recovery{}); err != nil || st != (LoadStats{}) {
		t.Errorf("Load = %+v, %v", st, err)
	}
	if r, err := s.Cleanup(time.Now()); err != nil || r != (CleanupResult{}) {
		t.Errorf("Cleanup = %+v, %v", r, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPragmasAppliedAndLogged(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.SQLite = conf.SQLite{CacheSize: 1000, TempStore: "FILE", MmapSize: 1 << 20, BusyTimeout: 1234, Synchronous: "FULL", JournalMode: "WAL", ForeignKeys: false}
	var logged bytes.Buffer
	s, err := Open(cfg, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, want := range []string{"cache_size=1000", "temp_store=1", "mmap_size=1048576", "busy_timeout=1234", "synchronous=2", "journal_mode=wal", "foreign_keys=0", "schema=" + strconv.Itoa(SchemaVersion)} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("start-up log lacks %s: %s", want, logged.String())
		}
	}
}

func TestPragmaNotAppliedIsAnError(t *testing.T) {
	tests := []struct {
		name   string
		change func(*conf.SQLite)
		want   string
	}{
		// SQLite caps mmap_size at its compiled maximum without complaint.
		{"mmap beyond limit", func(c *conf.SQLite) { c.MmapSize = 1 << 50 }, "mmap_size"},
		{"unknown journal mode", func(c *conf.SQLite) { c.JournalMode = "SIDEWAYS" }, "journal_mode"},
		{"unknown synchronous", func(c *conf.SQLite) { c.Synchronous = "SOMETIMES" }, "synchronous"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			tt.change(&cfg.SQLite)
			s, err := Open(cfg, nil)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), DatabaseFile) {
				t.Errorf("error %q does not name %s and the file", err, tt.want)
			}
			// The lock was released: a corrected configuration opens.
			open(t, testConfig(cfg.DataDir))
		})
	}
}

func TestCorruptDatabaseStopsStartUp(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, DatabaseFile)
	garbage := bytes.Repeat([]byte("this is not a database "), 400)
	if err := os.WriteFile(file, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(testConfig(dir), nil)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "backup") {
		t.Fatalf("Open of a corrupt file: %v", err)
	}
	if b, _ := os.ReadFile(file); !bytes.Equal(b, garbage) {
		t.Error("the corrupt file was changed")
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	dir := t.TempDir()
	s := open(t, testConfig(dir))
	if err := s.solo(func(c *sqlite.Conn) error { return sqlitex.ExecuteTransient(c, "PRAGMA user_version = 99;", nil) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(testConfig(dir), nil)
	if err == nil || !strings.Contains(err.Error(), "schema version 99") {
		t.Fatalf("Open of a newer schema: %v", err)
	}
}

func TestDataDirUnusable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(testConfig(file), nil)
	if err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("Open with a file as data-dir: %v", err)
	}
	// A database path that is a directory cannot be opened as a file.
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, DatabaseFile), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err = Open(testConfig(dir), nil)
	if err == nil || !strings.Contains(err.Error(), DatabaseFile) {
		t.Fatalf("Open with a directory as database: %v", err)
	}
}

func TestSecondOpenRefused(t *testing.T) {
	cfg := testConfig(t.TempDir())
	s := open(t, cfg)
	_, err := Open(cfg, nil)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "another promptmqd") {
		t.Fatalf("second Open: %v", err)
	}
	s.Close()
	open(t, cfg) // the lock went with the first store
}

func TestSubmitAfterClose(t *testing.T) {
	s := open(t, testConfig(t.TempDir()))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if err := wait(func(d func(error)) { s.DeleteRetained("x", d) }); !errors.Is(err, ErrClosed) {
		t.Fatalf("op after Close: %v", err)
	}
}

// Close commits what was submitted before it: every callback fires, with nil.
func TestCloseDrains(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.BatchSize = 7
	s := open(t, cfg)
	must(t, func(d func(error)) { s.SaveSession(&Session{ClientID: "c", Expiry: 60}, d) })
	var wg sync.WaitGroup
	const n = 500
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		m := &Message{ID: s.NextMessageID(), Topic: "t", Payload: []byte{byte(i)}, Created: time.Now().UnixNano()}
		s.AddDeliveries(m, []Delivery{{ClientID: "c", QoS: 1}}, func(err error) { errs <- err; wg.Done() })
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s = open(t, cfg)
	if _, stats := load(t, s); stats.Deliveries != n {
		t.Fatalf("%d deliveries recovered, want %d", stats.Deliveries, n)
	}
}
