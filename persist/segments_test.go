package persist

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// submitBatch closes s and reopens its directory so that the ops submit makes (exactly n)
// commit as one batch, then reopens it as usual and returns that store.
func submitBatch(t *testing.T, s *Store, n int, submit func(s *Store, done func(error))) *Store {
	t.Helper()
	base := s.cfg
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := base
	cfg.BatchSize = n
	cfg.BatchInterval = time.Hour   // the batch closes when full
	cfg.SQLite.Synchronous = "FULL" // commits fsync, so the idle writer waits for company
	s = open(t, cfg)
	errs := make(chan error, n)
	submit(s, func(err error) { errs <- err })
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Batches != 1 || st.Committed != uint64(n) {
		t.Fatalf("stats %+v, want one batch of %d", st, n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return open(t, base)
}

// count runs a count query on the writer.
func count(t *testing.T, s *Store, sql string) int {
	t.Helper()
	n := 0
	if err := s.solo(func(c *sqlite.Conn) error {
		return sqlitex.ExecuteTransient(c, sql, &sqlitex.ExecOptions{ResultFunc: func(q *sqlite.Stmt) error { n = q.ColumnInt(0); return nil }})
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

func readAll(t *testing.T, s *Store, client string, from uint64, limit int) []StoredDelivery {
	t.Helper()
	got := make(chan []StoredDelivery, 1)
	s.ReadDeliveries(client, from, limit, func(rows []StoredDelivery, err error) {
		if err != nil {
			t.Error(err)
		}
		got <- rows
	})
	return <-got
}

func ids(ds []Delivery) []uint64 {
	out := make([]uint64, len(ds))
	for i, d := range ds {
		out[i] = d.MessageID
	}
	return out
}

// Deliveries of one client in one commit become a segment; acknowledgements and state changes
// of its entries are marks; recovery and page-in merge segment entries with rows (shared
// bodies, a late id inside a segment's range) in id order; the segment goes with its last
// pending entry.
func TestSegments(t *testing.T) {
	s := open(t, testConfig(t.TempDir()))
	for _, c := range []string{"a", "b"} {
		must(t, func(d func(error)) { s.SaveSession(&Session{ClientID: c, Expiry: NeverExpires}, d) })
	}
	now := time.Now().UnixNano()
	late := s.NextMessageID() // taken first, submitted after others: below a's segment
	msg := func(id uint64) *Message {
		return &Message{ID: id, Topic: "t/" + strconv.FormatUint(id, 10), Payload: []byte{byte(id)}, QoS: 2, Properties: []byte{1, 1}, Created: now}
	}
	var wantA, wantB []uint64
	const n = 40
	s = submitBatch(t, s, n, func(s *Store, done func(error)) {
		for i := range n {
			m := msg(s.NextMessageID())
			switch {
			case i%10 == 9: // shared body: rows
				s.AddDeliveries(m, []Delivery{{ClientID: "a", QoS: 1}, {ClientID: "b", QoS: 1}}, done)
				wantA, wantB = append(wantA, m.ID), append(wantB, m.ID)
			case i%8 == 0:
				s.AddDeliveries(m, []Delivery{{ClientID: "b", QoS: 2, SubIDs: []uint32{7, 300}}}, done)
				wantB = append(wantB, m.ID)
			default:
				s.AddDeliveries(m, []Delivery{{ClientID: "a", QoS: 2, Retain: true}}, done)
				wantA = append(wantA, m.ID)
			}
		}
	})
	if got := count(t, s, "SELECT count(*) FROM segments;"); got != 2 {
		t.Fatalf("%d segments, want one for a and one for b", got)
	}
	must(t, func(d func(error)) { s.AddDeliveries(msg(late), []Delivery{{ClientID: "a", QoS: 2}}, d) })
	wantA = append([]uint64{late}, wantA...)
	if got := count(t, s, "SELECT count(*) FROM segments;"); got != 2 {
		t.Fatalf("late id made a segment")
	}
	// A second batch for a, entirely above its first segment, and one below it: rows.
	s = submitBatch(t, s, 5, func(s *Store, done func(error)) {
		for range 5 {
			m := msg(s.NextMessageID())
			s.AddDeliveries(m, []Delivery{{ClientID: "a", QoS: 1}}, done)
			wantA = append(wantA, m.ID)
		}
	})
	if got := count(t, s, "SELECT count(*) FROM segments;"); got != 3 {
		t.Fatalf("%d segments, want 3", got)
	}

	sent, acked := wantA[3], wantA[4]
	must(t, func(d func(error)) { s.UpdateDelivery("a", sent, 77, Released, d) })
	must(t, func(d func(error)) { s.DeleteDelivery("a", acked, d) })
	must(t, func(d func(error)) { s.DeleteDelivery("a", acked, d) }) // again: nothing changes
	must(t, func(d func(error)) { s.DeleteDelivery("a", late, d) })  // a row inside the range
	wantA = append(wantA[:4:4], wantA[5:]...)
	wantA = wantA[1:]

	check := func(s *Store) {
		t.Helper()
		got, stats := load(t, s)
		var gotA, gotB []Delivery
		for _, d := range got.Deliveries {
			if d.ClientID == "a" {
				gotA = append(gotA, d)
			} else {
				gotB = append(gotB, d)
			}
			if m := got.Messages[d.MessageID]; !reflect.DeepEqual(m, *msg(d.MessageID)) {
				t.Errorf("message %d: %+v", d.MessageID, m)
			}
		}
		if !reflect.DeepEqual(ids(gotA), wantA) || !reflect.DeepEqual(ids(gotB), wantB) {
			t.Fatalf("recovered a %v b %v, want %v %v", ids(gotA), ids(gotB), wantA, wantB)
		}
		if stats.Deliveries != len(wantA)+len(wantB) {
			t.Errorf("stats %+v", stats)
		}
		for _, d := range gotA {
			if d.MessageID == sent && (d.PacketID != 77 || d.State != Released) {
				t.Errorf("state of %d not kept: %+v", sent, d)
			}
		}
		for _, d := range gotB {
			if d.QoS == 2 && !reflect.DeepEqual(d.SubIDs, []uint32{7, 300}) {
				t.Errorf("sub ids of %d: %v", d.MessageID, d.SubIDs)
			}
		}
		// Page-in from the middle of a segment, across rows and the next segment.
		rows := readAll(t, s, "a", wantA[2], 30)
		var paged []uint64
		for _, r := range rows {
			paged = append(paged, r.Delivery.MessageID)
			if !reflect.DeepEqual(*r.Message, *msg(r.Delivery.MessageID)) {
				t.Errorf("paged message %+v", *r.Message)
			}
		}
		if want := wantA[2:min(len(wantA), 32)]; !reflect.DeepEqual(paged, want) {
			t.Errorf("paged %v, want %v", paged, want)
		}
	}
	check(s)
	s = reopen(t, s)
	check(s)

	// Acknowledge everything of a: its segments and marks go.
	for _, id := range wantA {
		must(t, func(d func(error)) { s.DeleteDelivery("a", id, d) })
	}
	if got := count(t, s, "SELECT count(*) FROM segments WHERE client_id = 'a';") + count(t, s, "SELECT count(*) FROM segment_marks WHERE client_id = 'a';"); got != 0 {
		t.Errorf("%d segment rows and marks of a left", got)
	}
	if len(s.segs["a"]) != 0 {
		t.Errorf("index keeps %v", s.segs["a"])
	}
	if _, ok := s.segs["b"]; !ok {
		t.Fatalf("b has no index entry before its session ends")
	}
	must(t, func(d func(error)) { s.DeleteSession("b", d) })
	if got := count(t, s, "SELECT count(*) FROM segments;") + count(t, s, "SELECT count(*) FROM deliveries;"); got != 0 {
		t.Errorf("%d rows left after the session's end", got)
	}
	if _, ok := s.segs["b"]; ok {
		t.Errorf("index entry of b outlived its session")
	}
	s = reopen(t, s)
	if got, _ := load(t, s); len(got.Deliveries) != 0 || len(s.segs["a"]) != 0 {
		t.Errorf("left: %+v, index %v", got.Deliveries, s.segs)
	}
}

// Expired and aged segment entries are dropped by cleanup and at start-up; the segment goes
// with its last one.
func TestSegmentExpiry(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Cleanup.MaxMessageAge = time.Hour
	s := open(t, cfg)
	must(t, func(d func(error)) { s.SaveSession(&Session{ClientID: "c", Expiry: NeverExpires}, d) })
	now := time.Now()
	var kept []uint64
	s = submitBatch(t, s, 8, func(s *Store, done func(error)) {
		for i := range 8 {
			m := &Message{ID: s.NextMessageID(), Topic: "t", Created: now.UnixNano()}
			if i%2 == 0 {
				m.Expires = now.Add(time.Minute).UnixNano()
			} else {
				kept = append(kept, m.ID)
			}
			s.AddDeliveries(m, []Delivery{{ClientID: "c", QoS: 1}}, done)
		}
	})
	r, err := s.Cleanup(now.Add(2 * time.Minute))
	if err != nil || r.Messages != 4 {
		t.Fatalf("cleanup %+v, %v", r, err)
	}
	if r, err := s.Cleanup(now.Add(2 * time.Minute)); err != nil || r.Messages != 0 {
		t.Fatalf("second cleanup %+v, %v", r, err)
	}
	s = reopen(t, s)
	got, _ := load(t, s)
	if !reflect.DeepEqual(ids(got.Deliveries), kept) {
		t.Fatalf("kept %v, want %v", ids(got.Deliveries), kept)
	}
	// The rest ages past max-message-age while the broker is down.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Cleanup.MaxMessageAge = time.Nanosecond
	s = open(t, cfg)
	got, stats := load(t, s)
	if len(got.Deliveries) != 0 || stats.ExpiredMessages != 4 {
		t.Fatalf("after start-up: %v, %+v", ids(got.Deliveries), stats)
	}
	if n := count(t, s, "SELECT count(*) FROM segments;"); n != 0 || len(s.segs["c"]) != 0 {
		t.Errorf("%d segments left, index %v", n, s.segs)
	}
}

// A batch whose commit fails rolls its segments back, out of the index too: each op is then
// retried alone (as a row) and the failing one fails by itself.
func TestSegmentRolledBack(t *testing.T) {
	s := open(t, testConfig(t.TempDir()))
	must(t, func(d func(error)) { s.SaveSession(&Session{ClientID: "ok", Expiry: NeverExpires}, d) })
	var failed, committed int
	cfg := s.cfg
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.BatchSize = 9
	cfg.BatchInterval = time.Hour
	cfg.SQLite.Synchronous = "FULL"
	s = open(t, cfg)
	errs := make(chan error, 9)
	now := time.Now().UnixNano()
	for i := range 9 {
		client := "ok"
		if i == 8 {
			client = "nobody" // foreign key: the whole batch's COMMIT fails
		}
		s.AddDeliveries(&Message{ID: s.NextMessageID(), Topic: "t", Created: now}, []Delivery{{ClientID: client}}, func(err error) { errs <- err })
	}
	for range 9 {
		if err := <-errs; err != nil {
			failed++
		} else {
			committed++
		}
	}
	if failed != 1 || committed != 8 {
		t.Fatalf("%d failed, %d committed", failed, committed)
	}
	if len(s.segs) != 0 {
		t.Errorf("index keeps rolled-back segments: %v", s.segs)
	}
	s = reopen(t, s)
	if got, _ := load(t, s); len(got.Deliveries) != 8 {
		t.Errorf("%d deliveries recovered", len(got.Deliveries))
	}
}

func TestSegmentCodec(t *testing.T) {
	d := Delivery{ClientID: "c", MessageID: 1 << 40, QoS: 2, PacketID: 65535, State: Released, Retain: true, SubIDs: []uint32{1, 268435455}}
	m := &Message{ID: 1 << 40, Topic: "a/b", Payload: []byte("payload"), QoS: 1, Retain: true, Properties: []byte{1, 0}, Expires: -5, Created: 1 << 60}
	// Entries after the first repeat its topic, its created, both or neither.
	entries := []struct {
		d Delivery
		m *Message
	}{
		{d, m},
		{Delivery{ClientID: "c", MessageID: 1<<40 + 1, QoS: 1}, &Message{ID: 1<<40 + 1, Topic: "a/b", Payload: []byte("p2"), Created: 1 << 60}},
		{Delivery{ClientID: "c", MessageID: 1<<40 + 2, QoS: 1}, &Message{ID: 1<<40 + 2, Topic: "a/b", Payload: []byte("p3"), Created: 7}},
		{Delivery{ClientID: "c", MessageID: 1<<40 + 3, QoS: 1}, &Message{ID: 1<<40 + 3, Topic: "x", Created: 7}},
		{Delivery{ClientID: "c", MessageID: 1<<40 + 4}, &Message{ID: 1<<40 + 4, Topic: "y", Created: 0}},
	}
	var enc segmentEncoder
	var b []byte
	lens := make([]int, len(entries))
	for i, e := range entries {
		b = enc.append(b, &e.d, e.m, e.m.Created)
		lens[i] = len(b)
	}
	if full, repeated := lens[0], lens[1]-lens[0]; repeated >= full-len(m.Properties)-len(m.Payload)-4 {
		t.Errorf("an entry repeating topic and created takes %d bytes, the first %d", repeated, full)
	}
	var r segmentDecoder
	r.reset(b)
	for _, want := range entries {
		gd, gm, ok, err := r.next("c", true)
		if err != nil || !ok || !reflect.DeepEqual(gd, want.d) || !reflect.DeepEqual(gm, want.m) {
			t.Fatalf("decoded %+v %+v %v %v, want %+v %+v", gd, gm, ok, err, want.d, want.m)
		}
	}
	// Skipping entries keeps what the next one repeats.
	r.reset(b)
	for _, want := range entries[:2] {
		if id, ok, err := r.skip(); id != want.d.MessageID || !ok || err != nil {
			t.Fatalf("skip: %d %v %v", id, ok, err)
		}
	}
	if gd, gm, ok, err := r.next("c", true); err != nil || !ok || !reflect.DeepEqual(gd, entries[2].d) || !reflect.DeepEqual(gm, entries[2].m) {
		t.Fatalf("after skipping, decoded %+v %+v %v %v", gd, gm, ok, err)
	}
	for cut := range len(b) - 1 {
		r.reset(b[:cut+1])
		var err error
		for ok := true; ok && err == nil; {
			_, _, ok, err = r.next("c", true)
		}
		if !slices.Contains(lens, cut+1) && !errors.Is(err, errCorruptSegment) {
			t.Errorf("truncated at %d: %v", cut+1, err)
		}
	}
	// A first entry cannot repeat anything.
	r.reset([]byte{1, 0, 0, 0, flagSameTopic, 0})
	if _, _, _, err := r.next("c", true); !errors.Is(err, errCorruptSegment) {
		t.Errorf("first entry repeating a topic: %v", err)
	}
}

// A database schema version 2 wrote (inline rows) is migrated to 3 at Open with a schema-v2
// copy kept; its rows and the segments written after merge in id order, and NextMessageID
// stays above both.
func TestMigrateV2Rows(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, DatabaseFile)
	conn, err := sqlite.OpenConn(file, sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrateWith(conn, file, migrations[:2]); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixNano()
	v2 := `
INSERT INTO sessions (client_id, expiry, expires_at) VALUES ('a', 4294967295, 0);
INSERT INTO deliveries (client_id, message_id, qos, packet_id, state, retain, topic, payload, msg_qos, msg_retain, expires, created) VALUES
	('a', 5, 1, 0, 0, 0, 't/5', x'05', 1, 0, 0, ` + strconv.FormatInt(now, 10) + `);`
	if err := sqlitex.ExecuteScript(conn, v2, nil); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	s := open(t, testConfig(dir))
	if _, err := os.Stat(backupFile(file, 2)); err != nil {
		t.Errorf("no schema-v2 copy kept: %v", err)
	}
	want := []uint64{5}
	s = submitBatch(t, s, 6, func(s *Store, done func(error)) {
		for range 6 {
			m := &Message{ID: s.NextMessageID(), Topic: "t", Payload: []byte{1}, QoS: 1, Created: now}
			want = append(want, m.ID)
			s.AddDeliveries(m, []Delivery{{ClientID: "a", QoS: 1}}, done)
		}
	})
	if want[1] <= 5 {
		t.Fatalf("NextMessageID %d after migration, want > 5", want[1])
	}
	if n := count(t, s, "SELECT count(*) FROM segments;"); n != 1 {
		t.Fatalf("%d segments", n)
	}
	got, _ := load(t, s)
	if !reflect.DeepEqual(ids(got.Deliveries), want) || got.Messages[5].Topic != "t/5" {
		t.Errorf("recovered %v %+v, want %v", ids(got.Deliveries), got.Messages[5], want)
	}
	s = reopen(t, s)
	if id := s.NextMessageID(); id <= want[len(want)-1] {
		t.Errorf("NextMessageID %d at open, want above the segment's %d", id, want[len(want)-1])
	}
}

// A database schema version 3 wrote (segment entries each with their topic and created) is
// migrated to 4 at Open with a schema-v3 copy kept; its entries and the compact ones written
// after read back alike.
func TestMigrateV3Segments(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, DatabaseFile)
	conn, err := sqlite.OpenConn(file, sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrateWith(conn, file, migrations[:3]); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixNano()
	var body []byte
	for id := uint64(1); id <= 4; id++ {
		var v3 segmentEncoder // a fresh encoder per entry repeats nothing: version 3's layout
		body = v3.append(body, &Delivery{ClientID: "a", QoS: 1}, &Message{ID: id, Topic: "t/v3", Payload: []byte{byte(id)}, QoS: 1}, now)
	}
	err = sqlitex.ExecuteScript(conn, `INSERT INTO sessions (client_id, expiry, expires_at) VALUES ('a', 4294967295, 0);`, nil)
	if err == nil {
		err = sqlitex.Execute(conn, `INSERT INTO segments (client_id, first_id, last_id, count, created, expires, body) VALUES ('a', 1, 4, 4, ?, 0, ?);`,
			&sqlitex.ExecOptions{Args: []any{now, body}})
	}
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	s := open(t, testConfig(dir))
	if _, err := os.Stat(backupFile(file, 3)); err != nil {
		t.Errorf("no schema-v3 copy kept: %v", err)
	}
	s = submitBatch(t, s, 6, func(s *Store, done func(error)) {
		for range 6 {
			s.AddDeliveries(&Message{ID: s.NextMessageID(), Topic: "t/v4", Payload: []byte{9}, QoS: 1}, []Delivery{{ClientID: "a", QoS: 1}}, done)
		}
	})
	if n := count(t, s, "SELECT count(*) FROM segments;"); n != 2 {
		t.Fatalf("%d segments", n)
	}
	got, _ := load(t, s)
	if len(got.Deliveries) != 10 {
		t.Fatalf("recovered %d deliveries, want 10", len(got.Deliveries))
	}
	for _, d := range got.Deliveries {
		m := got.Messages[d.MessageID]
		want := "t/v4"
		if d.MessageID <= 4 {
			want = "t/v3"
		}
		if m.Topic != want || m.Created == 0 {
			t.Errorf("message %d: topic %q created %d, want topic %q", d.MessageID, m.Topic, m.Created, want)
		}
	}
}
