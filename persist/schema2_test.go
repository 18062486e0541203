package persist

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/x0a1b/promptmq/conf"
)

// A database as schema version 1 wrote it (every body in messages, deliveries referencing it) is
// migrated to version 2 at Open: a copy named schema-v1 is kept, every delivery finds its body,
// and the bodies still go with their last delivery.
func TestMigrateV1Deliveries(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, DatabaseFile)
	conn, err := sqlite.OpenConn(file, sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Now().UnixNano()
	now := strconv.FormatInt(created, 10)
	v1 := migrations[0] + `
INSERT INTO sessions (client_id, expiry, expires_at) VALUES ('a', 4294967295, 0), ('b', 4294967295, 0);
INSERT INTO messages (id, topic, payload, qos, retain, props, expires, created) VALUES
	(7, 'shared', x'01', 1, 0, NULL, 0, ` + now + `), (9, 'single', x'02', 2, 1, x'0101', 0, ` + now + `);
INSERT INTO deliveries (client_id, message_id, qos, packet_id, state, retain, sub_ids) VALUES
	('a', 7, 1, 0, 0, 0, NULL), ('b', 7, 1, 3, 1, 0, x'05'), ('a', 9, 2, 4, 2, 1, NULL);
PRAGMA user_version = 1;
`
	if err := sqlitex.ExecuteScript(conn, v1, nil); err != nil {
		t.Fatal(err)
	}
	conn.Close()

	s := open(t, testConfig(dir))
	if _, err := os.Stat(backupFile(file, 1)); err != nil {
		t.Errorf("no schema-v1 copy kept: %v", err)
	}
	got, stats := load(t, s)
	shared := Message{ID: 7, Topic: "shared", Payload: []byte{1}, QoS: 1, Created: created}
	single := Message{ID: 9, Topic: "single", Payload: []byte{2}, QoS: 2, Retain: true, Properties: []byte{1, 1}, Created: created}
	wantDeliveries := []Delivery{
		{ClientID: "a", MessageID: 7, QoS: 1},
		{ClientID: "a", MessageID: 9, QoS: 2, PacketID: 4, State: Released, Retain: true},
		{ClientID: "b", MessageID: 7, QoS: 1, PacketID: 3, State: Sent, SubIDs: []uint32{5}},
	}
	if !reflect.DeepEqual(got.Deliveries, wantDeliveries) || !reflect.DeepEqual(got.Messages, map[uint64]Message{7: shared, 9: single}) || stats.Messages != 2 {
		t.Errorf("recovered %+v %+v, stats %+v", got.Deliveries, got.Messages, stats)
	}
	if id := s.NextMessageID(); id <= 9 {
		t.Errorf("NextMessageID = %d after migration, want > 9", id)
	}
	// New rows go in beside the migrated ones; a shared body goes with its last delivery.
	m := &Message{ID: s.NextMessageID(), Topic: "new", Payload: []byte{3}, QoS: 1, Created: time.Now().UnixNano()}
	must(t, func(d func(error)) { s.AddDeliveries(m, []Delivery{{ClientID: "a", QoS: 1}}, d) })
	must(t, func(d func(error)) { s.DeleteDelivery("a", 7, d) })
	must(t, func(d func(error)) { s.DeleteDelivery("b", 7, d) })
	s = reopen(t, s)
	got, stats = load(t, s)
	if len(got.Deliveries) != 2 || stats.Messages != 2 || got.Messages[m.ID].Topic != "new" || got.Messages[9].Topic != "single" {
		t.Errorf("after acks: %+v %+v", got, stats)
	}
	var bodies int
	if err := s.solo(func(c *sqlite.Conn) error {
		return sqlitex.ExecuteTransient(c, "SELECT count(*) FROM messages;", &sqlitex.ExecOptions{
			ResultFunc: func(q *sqlite.Stmt) error { bodies = q.ColumnInt(0); return nil },
		})
	}); err != nil || bodies != 1 {
		t.Errorf("%d shared bodies left (%v), want 1 (message 9)", bodies, err)
	}
}

// Deliveries of one batch share multi-row INSERTs: rows of several sizes, inline and shared,
// with an ack of an earlier row between them, all come back in order.
func TestBatchedDeliveries(t *testing.T) {
	cfg := testConfig(t.TempDir())
	s := open(t, cfg)
	must(t, func(d func(error)) { s.SaveSession(&Session{ClientID: "a", Expiry: NeverExpires}, d) })
	must(t, func(d func(error)) { s.SaveSession(&Session{ClientID: "b", Expiry: NeverExpires}, d) })
	cfg.BatchSize = 200
	cfg.BatchInterval = time.Hour   // the batch closes when full
	cfg.SQLite.Synchronous = "FULL" // commits fsync, so the idle writer waits for company
	s = reopen(t, s)
	s.cfg = cfg
	s = reopen(t, s)
	errs := make(chan error, cfg.BatchSize)
	want := map[uint64]int{}
	for i := range cfg.BatchSize {
		m := &Message{ID: s.NextMessageID(), Topic: "t", Payload: []byte{byte(i)}, QoS: 1, Created: time.Now().UnixNano()}
		switch {
		case i == 100: // acknowledges the row of op 99 in the same batch
			s.DeleteDelivery("a", m.ID-1, func(err error) { errs <- err })
			delete(want, m.ID-1)
			continue
		case i%7 == 0:
			s.AddDeliveries(m, []Delivery{{ClientID: "a", QoS: 1}, {ClientID: "b", QoS: 1}}, func(err error) { errs <- err })
			want[m.ID] = 2
		default:
			s.AddDeliveries(m, []Delivery{{ClientID: "a", QoS: 1, SubIDs: []uint32{uint32(i)}}}, func(err error) { errs <- err })
			want[m.ID] = 1
		}
	}
	for range cfg.BatchSize {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Batches != 1 {
		t.Errorf("%d batches, want one of %d ops", st.Batches, cfg.BatchSize)
	}
	s = reopen(t, s)
	got, _ := load(t, s)
	n := map[uint64]int{}
	last := map[string]uint64{}
	for _, d := range got.Deliveries {
		n[d.MessageID]++
		if d.MessageID <= last[d.ClientID] {
			t.Errorf("delivery %d of %s out of order", d.MessageID, d.ClientID)
		}
		last[d.ClientID] = d.MessageID
		if m := got.Messages[d.MessageID]; len(m.Payload) != 1 {
			t.Errorf("message %d has body %+v", d.MessageID, m)
		}
	}
	if !reflect.DeepEqual(n, want) {
		t.Errorf("deliveries per message %v, want %v", n, want)
	}
}

// RetainedBatch gets what Retained gets, in topic order, across several batches; an error from
// it stops the load and is returned.
func TestRetainedBatches(t *testing.T) {
	s := open(t, testConfig(t.TempDir()))
	const n = 2*retainedBatchSize + 5
	for i := range n {
		m := &Message{Topic: "r/" + strconv.Itoa(i), Payload: []byte(strconv.Itoa(i)), QoS: byte(i % 3), Retain: true, Created: int64(i)}
		if i%10 == 0 {
			m.Properties = []byte{1, 1}
			m.Expires = 1 << 62
		}
		if i == 7 {
			m.Payload = nil
		}
		must(t, func(d func(error)) { s.SaveRetained(m, d) })
	}
	s = reopen(t, s)
	want, _ := load(t, s)
	s = reopen(t, s)
	got := map[string]Message{}
	var last string
	batches := 0
	stats, err := s.Load(Recovery{RetainedBatch: func(topics [][]byte, ms []Message) error {
		batches++
		for i := range ms {
			m := ms[i]
			m.Topic = string(topics[i])
			m.Payload = bytes.Clone(m.Payload)
			m.Properties = bytes.Clone(m.Properties)
			if m.Topic <= last {
				t.Errorf("%q after %q", m.Topic, last)
			}
			last = m.Topic
			got[m.Topic] = m
		}
		return nil
	}})
	if err != nil || stats.Retained != n || batches != 3 {
		t.Fatalf("Load: %v, %+v, %d batches", err, stats, batches)
	}
	if !reflect.DeepEqual(got, want.Retained) {
		t.Errorf("batches differ from Retained")
	}
	s = reopen(t, s)
	boom := errors.New("boom")
	if _, err := s.Load(Recovery{RetainedBatch: func([][]byte, []Message) error { return boom }}); !errors.Is(err, boom) {
		t.Errorf("Load with a failing consumer: %v", err)
	}
}

// ReadDeliveries pages rows back in id order from fromID, inline bodies and shared ones alike.
func TestReadDeliveriesInlineAndShared(t *testing.T) {
	s := open(t, testConfig(t.TempDir()))
	for _, c := range []string{"a", "b"} {
		must(t, func(d func(error)) { s.SaveSession(&Session{ClientID: c, Expiry: NeverExpires}, d) })
	}
	now := time.Now().UnixNano()
	var ids []uint64
	for i := range 5 {
		m := &Message{ID: s.NextMessageID(), Topic: "t/" + strconv.Itoa(i), Payload: []byte{byte(i)}, QoS: 1, Properties: []byte{1, 1}, Created: now}
		ds := []Delivery{{ClientID: "a", QoS: 1, SubIDs: []uint32{3}}}
		if i%2 == 1 {
			ds = append(ds, Delivery{ClientID: "b", QoS: 1})
		}
		must(t, func(d func(error)) { s.AddDeliveries(m, ds, d) })
		ids = append(ids, m.ID)
	}
	got := make(chan []StoredDelivery, 1)
	s.ReadDeliveries("a", ids[1], 3, func(rows []StoredDelivery, err error) {
		if err != nil {
			t.Error(err)
		}
		got <- rows
	})
	rows := <-got
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3", len(rows))
	}
	for i, r := range rows {
		want := Message{ID: ids[i+1], Topic: "t/" + strconv.Itoa(i+1), Payload: []byte{byte(i + 1)}, QoS: 1, Properties: []byte{1, 1}, Created: now}
		if r.Delivery.MessageID != want.ID || !reflect.DeepEqual(r.Delivery.SubIDs, []uint32{3}) || !reflect.DeepEqual(*r.Message, want) {
			t.Errorf("row %d: %+v %+v, want message %+v", i, r.Delivery, *r.Message, want)
		}
	}
	s.ReadDeliveries("a", 0, 0, func(rows []StoredDelivery, err error) {
		if rows != nil || err != nil {
			t.Errorf("limit 0: %v, %v", rows, err)
		}
	})
}

// batch-interval is a wait for company when commits fsync and the writer was idle; ops that
// arrived while it was busy commit as soon as it is free, however long the interval.
func TestBusyWriterDoesNotWaitForCompany(t *testing.T) {
	cfg := testConfig(t.TempDir())
	s := open(t, cfg)
	must(t, func(d func(error)) { s.SaveSession(&Session{ClientID: "a", Expiry: NeverExpires}, d) })
	cfg.BatchInterval = time.Hour
	cfg.SQLite.Synchronous = "FULL"
	s = reopen(t, s)
	s.cfg = cfg
	s = reopen(t, s)
	// Keep the writer busy with a solo op until an ordinary op is queued behind it.
	running, release := make(chan struct{}), make(chan struct{})
	soloDone := make(chan error, 1)
	go func() {
		soloDone <- s.solo(func(*sqlite.Conn) error {
			close(running)
			<-release
			return nil
		})
	}()
	<-running
	committed := make(chan error, 1)
	s.AddDeliveries(&Message{ID: s.NextMessageID(), Topic: "t", QoS: 1, Created: time.Now().UnixNano()},
		[]Delivery{{ClientID: "a", QoS: 1}}, func(err error) { committed <- err })
	close(release)
	if err := <-soloDone; err != nil {
		t.Fatal(err)
	}
	if err := <-committed; err != nil { // with a wait, this would take batch-interval: an hour
		t.Fatal(err)
	}
}

// With WAL and synchronous NORMAL a commit has no fsync to share: even an idle writer commits
// at once, however long batch-interval is.
func TestWALNormalWriterDoesNotWait(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.BatchInterval = time.Hour
	cfg.SQLite.Synchronous, cfg.SQLite.JournalMode = "NORMAL", "WAL"
	s := open(t, cfg)
	must(t, func(d func(error)) { s.SaveSession(&Session{ClientID: "a", Expiry: NeverExpires}, d) })
	for _, c := range []struct {
		synchronous, journal string
		syncs                bool
	}{{"NORMAL", "WAL", false}, {"OFF", "DELETE", false}, {"NORMAL", "DELETE", true}, {"FULL", "WAL", true}, {"extra", "wal", true}} {
		if got := commitSyncs(conf.SQLite{Synchronous: c.synchronous, JournalMode: c.journal}); got != c.syncs {
			t.Errorf("commitSyncs(%s, %s) = %v, want %v", c.synchronous, c.journal, got, c.syncs)
		}
	}
}
