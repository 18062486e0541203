package persist

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// Recovery receives the stored state at start, one record per call, in this order: sessions,
// subscriptions, deliveries (per client in message-id order, that is acceptance order), inbound
// QoS 2 ids, retained messages. A nil function skips its records; an error stops the load and is
// returned. Records and their slices belong to the callee.
type Recovery struct {
	Session      func(Session) error
	Subscription func(Subscription) error
	// Delivery gets the message each delivery references; every delivery of one message gets the
	// same *Message, so the engine can share one body as the live broker does.
	Delivery func(Delivery, *Message) error
	Inbound  func(InboundQoS2) error
	Retained func(Message) error
	// RetainedBatch, when set, takes the retained messages instead of Retained, a batch at a
	// time: topics[i] is the topic of ms[i] (whose Topic is empty). Topics, payloads and
	// properties alias buffers the next batches reuse, so the callee copies what it keeps. It
	// runs on a goroutine of its own while the next batch is read: recovery of a million
	// retained messages costs the slower of the two, not their sum, and two allocations per
	// message fewer (issue 7: under 3 s).
	RetainedBatch func(topics [][]byte, ms []Message) error
}

// LoadStats says what recovery found and discarded, and how long it took.
type LoadStats struct {
	Sessions, Subscriptions, Deliveries, Messages, Inbound, Retained int
	// Discarded counts rows dropped because they expired while the broker was down.
	ExpiredSessions, ExpiredMessages, ExpiredRetained int
	Took                                              time.Duration
}

// Load discards what expired while the broker was down, then streams the rest to r. Call it once,
// before the listeners open. A session whose client was connected when the broker stopped
// (ExpiresAt 0) counts as disconnected now: its expiry starts at this start-up [MQTT-3.1.2-23], and
// that deadline is written so a second restart keeps it.
func (s *Store) Load(r Recovery) (LoadStats, error) {
	var stats LoadStats
	if !s.durable {
		return stats, nil
	}
	start := time.Now()
	err := s.solo(func(conn *sqlite.Conn) error { return s.load(conn, r, start.UnixNano(), &stats) })
	stats.Took = time.Since(start)
	if err != nil {
		return stats, s.openError("recover from", err)
	}
	s.log.Info("persist: recovered", "file", s.file, "sessions", stats.Sessions, "subscriptions", stats.Subscriptions,
		"queued_messages", stats.Messages, "deliveries", stats.Deliveries, "inbound_qos2", stats.Inbound, "retained", stats.Retained,
		"expired_sessions", stats.ExpiredSessions, "expired_messages", stats.ExpiredMessages, "expired_retained", stats.ExpiredRetained,
		"took", stats.Took)
	return stats, nil
}

func (s *Store) load(conn *sqlite.Conn, r Recovery, now int64, stats *LoadStats) error {
	if err := s.discardExpired(conn, now, stats); err != nil {
		return err
	}
	// One read transaction, so the five scans see one state.
	if err := sqlitex.ExecuteTransient(conn, "BEGIN;", nil); err != nil {
		return err
	}
	defer sqlitex.ExecuteTransient(conn, "ROLLBACK;", nil)

	err := query(conn, `SELECT client_id, expiry, expires_at, will_topic, will_payload, will_qos, will_retain, will_props,
			will_expires, will_created, will_delay FROM sessions;`, func(q *sqlite.Stmt) error {
		stats.Sessions++
		if r.Session == nil {
			return nil
		}
		sess := Session{ClientID: q.ColumnText(0), Expiry: uint32(q.ColumnInt64(1)), ExpiresAt: q.ColumnInt64(2)}
		if q.ColumnType(3) != sqlite.TypeNull {
			sess.Will = &Will{
				Message: Message{Topic: q.ColumnText(3), Payload: columnBlob(q, 4), QoS: byte(q.ColumnInt(5)),
					Retain: q.ColumnBool(6), Properties: columnBlob(q, 7), Expires: q.ColumnInt64(8), Created: q.ColumnInt64(9)},
				Delay: uint32(q.ColumnInt64(10)),
			}
		}
		return r.Session(sess)
	})
	if err != nil {
		return fmt.Errorf("sessions: %w", err)
	}
	err = query(conn, "SELECT client_id, filter, qos, no_local, rap, retain_handling, sub_id FROM subscriptions;", func(q *sqlite.Stmt) error {
		stats.Subscriptions++
		if r.Subscription == nil {
			return nil
		}
		return r.Subscription(Subscription{ClientID: q.ColumnText(0), Filter: q.ColumnText(1), QoS: byte(q.ColumnInt(2)),
			NoLocal: q.ColumnBool(3), RetainAsPublished: q.ColumnBool(4), RetainHandling: byte(q.ColumnInt(5)), ID: uint32(q.ColumnInt64(6))})
	})
	if err != nil {
		return fmt.Errorf("subscriptions: %w", err)
	}
	messages := make(map[uint64]*Message)
	err = query(conn, "SELECT id, topic, payload, qos, retain, props, expires, created FROM messages;", func(q *sqlite.Stmt) error {
		stats.Messages++
		if r.Delivery == nil {
			return nil
		}
		m := &Message{ID: uint64(q.ColumnInt64(0)), Topic: q.ColumnText(1), Payload: columnBlob(q, 2), QoS: byte(q.ColumnInt(3)),
			Retain: q.ColumnBool(4), Properties: columnBlob(q, 5), Expires: q.ColumnInt64(6), Created: q.ColumnInt64(7)}
		messages[m.ID] = m
		return nil
	})
	if err != nil {
		return fmt.Errorf("messages: %w", err)
	}
	if err := s.loadDeliveries(conn, r, messages, stats); err != nil {
		return fmt.Errorf("deliveries: %w", err)
	}
	err = query(conn, "SELECT client_id, packet_id FROM inbound;", func(q *sqlite.Stmt) error {
		stats.Inbound++
		if r.Inbound == nil {
			return nil
		}
		return r.Inbound(InboundQoS2{ClientID: q.ColumnText(0), PacketID: uint16(q.ColumnInt(1))})
	})
	if err != nil {
		return fmt.Errorf("inbound: %w", err)
	}
	if r.RetainedBatch != nil {
		if err := loadRetainedBatches(conn, r.RetainedBatch, stats); err != nil {
			return fmt.Errorf("retained: %w", err)
		}
		return nil
	}
	err = query(conn, "SELECT topic, payload, qos, props, expires, created FROM retained;", func(q *sqlite.Stmt) error {
		stats.Retained++
		if r.Retained == nil {
			return nil
		}
		return r.Retained(Message{Topic: q.ColumnText(0), Payload: columnBlob(q, 1), QoS: byte(q.ColumnInt(2)), Retain: true,
			Properties: columnBlob(q, 3), Expires: q.ColumnInt64(4), Created: q.ColumnInt64(5)})
	})
	if err != nil {
		return fmt.Errorf("retained: %w", err)
	}
	return nil
}

// discardExpired deletes, in one transaction, what expired while the broker was down and starts
// the expiry clock of sessions that were connected when it stopped.
func (s *Store) discardExpired(conn *sqlite.Conn, now int64, stats *LoadStats) (err error) {
	defer func() {
		if err != nil {
			s.reloadSegments() // the savepoint rolled back what expireSegments did
		}
	}()
	defer sqlitex.Save(conn)(&err)
	var cutoff int64 // messages created before it are too old; 0 = no age limit
	if age := s.cfg.Cleanup.MaxMessageAge; age > 0 {
		cutoff = now - int64(age)
	}
	steps := []struct {
		query string
		count *int
	}{
		{"DELETE FROM subscriptions WHERE client_id IN (SELECT client_id FROM sessions WHERE expires_at > 0 AND expires_at <= ?1);", nil},
		{"DELETE FROM deliveries WHERE client_id IN (SELECT client_id FROM sessions WHERE expires_at > 0 AND expires_at <= ?1);", nil},
		{"DELETE FROM inbound WHERE client_id IN (SELECT client_id FROM sessions WHERE expires_at > 0 AND expires_at <= ?1);", nil},
		{"DELETE FROM segments WHERE client_id IN (SELECT client_id FROM sessions WHERE expires_at > 0 AND expires_at <= ?1);", nil},
		{"DELETE FROM segment_marks WHERE client_id IN (SELECT client_id FROM sessions WHERE expires_at > 0 AND expires_at <= ?1);", nil},
		{"DELETE FROM sessions WHERE expires_at > 0 AND expires_at <= ?1;", &stats.ExpiredSessions},
		{"UPDATE sessions SET expires_at = ?1 + expiry * 1000000000 WHERE expires_at = 0 AND expiry != 4294967295;", nil},
		// Counted first, shared bodies and inline ones: the trigger deletes most shared bodies
		// along with their deliveries.
		{`SELECT (SELECT count(*) FROM messages WHERE (expires > 0 AND expires <= ?1) OR created < ?2)
			+ (SELECT count(*) FROM deliveries WHERE topic IS NOT NULL AND ((expires > 0 AND expires <= ?1) OR created < ?2));`, &stats.ExpiredMessages},
		{"DELETE FROM deliveries WHERE topic IS NULL AND message_id IN (SELECT id FROM messages WHERE (expires > 0 AND expires <= ?1) OR created < ?2);", nil},
		{"DELETE FROM deliveries WHERE topic IS NOT NULL AND ((expires > 0 AND expires <= ?1) OR created < ?2);", nil},
		// The trigger took the bodies of the deliveries just deleted; this catches unreferenced ones.
		{"DELETE FROM messages WHERE (expires > 0 AND expires <= ?1) OR created < ?2 OR id NOT IN (SELECT message_id FROM deliveries WHERE topic IS NULL);", nil},
		{"DELETE FROM retained WHERE expires > 0 AND expires <= ?1;", &stats.ExpiredRetained},
	}
	for _, st := range steps {
		q, err := conn.Prepare(st.query)
		if err != nil {
			return err
		}
		q.BindInt64(1, now)
		if q.BindParamCount() > 1 {
			q.BindInt64(2, cutoff)
		}
		if strings.HasPrefix(st.query, "SELECT") {
			if _, err := q.Step(); err != nil {
				q.Reset()
				return err
			}
			*st.count = q.ColumnInt(0)
			if err := q.Reset(); err != nil {
				return err
			}
			continue
		}
		if err := step(q); err != nil {
			return err
		}
		if st.count != nil {
			*st.count = conn.Changes()
		}
	}
	// Segments of the sessions just deleted went with them: the index is read again first.
	s.reloadSegments()
	n, err := s.expireSegments(conn, now, cutoff, -1)
	if err != nil {
		return err
	}
	stats.ExpiredMessages += n
	return nil
}

// retainedBatchSize is how many retained messages one RetainedBatch call gets: large enough
// that handing a batch over costs nothing per message, small enough to stay in cache.
const retainedBatchSize = 1024

// retainedChunk is one batch of retained messages and the buffer their bytes alias.
type retainedChunk struct {
	topics [][]byte
	ms     []Message
	buf    []byte
}

// take copies column col of q into c.buf and returns the copy, nil for NULL or empty. A
// buffer grown here is a new array: slices taken before keep the old one alive, untouched.
func (c *retainedChunk) take(q *sqlite.Stmt, col int) []byte {
	n := q.ColumnLen(col)
	if n == 0 {
		return nil
	}
	if cap(c.buf)-len(c.buf) < n {
		c.buf = make([]byte, 0, max(2*cap(c.buf), 64<<10, n))
	}
	start := len(c.buf)
	c.buf = c.buf[:start+n]
	q.ColumnBytes(col, c.buf[start:])
	return c.buf[start : start+n : start+n]
}

// errConsumerFailed stops the scan once RetainedBatch has returned an error.
var errConsumerFailed = errors.New("persist: retained consumer failed")

// loadRetainedBatches scans retained in topic order on this (the writer) goroutine and hands
// full batches to fn on another; two batches circulate, one filling while the other is read.
func loadRetainedBatches(conn *sqlite.Conn, fn func([][]byte, []Message) error, stats *LoadStats) error {
	free := make(chan *retainedChunk, 2)
	full := make(chan *retainedChunk, 2)
	for range cap(free) {
		free <- &retainedChunk{topics: make([][]byte, 0, retainedBatchSize), ms: make([]Message, 0, retainedBatchSize)}
	}
	var failed atomic.Bool
	consumed := make(chan error, 1)
	go func() {
		var err error
		for c := range full {
			if err == nil {
				if err = fn(c.topics, c.ms); err != nil {
					failed.Store(true)
				}
			}
			free <- c
		}
		consumed <- err
	}()
	next := func() *retainedChunk {
		c := <-free
		clear(c.ms) // no payload of an earlier batch stays reachable through it
		c.topics, c.ms, c.buf = c.topics[:0], c.ms[:0], c.buf[:0]
		return c
	}
	c := next()
	err := query(conn, "SELECT topic, payload, qos, props, expires, created FROM retained;", func(q *sqlite.Stmt) error {
		stats.Retained++
		c.topics = append(c.topics, c.take(q, 0))
		c.ms = append(c.ms, Message{Payload: c.take(q, 1), QoS: byte(q.ColumnInt(2)), Retain: true,
			Properties: c.take(q, 3), Expires: q.ColumnInt64(4), Created: q.ColumnInt64(5)})
		if len(c.ms) < retainedBatchSize {
			return nil
		}
		full <- c
		if failed.Load() {
			return errConsumerFailed
		}
		c = next()
		return nil
	})
	if err == nil && len(c.ms) > 0 {
		full <- c
	}
	close(full)
	if cerr := <-consumed; cerr != nil {
		return cerr
	}
	return err
}

// inlineMessage reads the body stored in a delivery row from its columns col (topic), col+1
// (payload), msg_qos, msg_retain, props, expires, created.
func inlineMessage(q *sqlite.Stmt, id uint64, col int) *Message {
	return &Message{ID: id, Topic: q.ColumnText(col), Payload: columnBlob(q, col+1), QoS: byte(q.ColumnInt(col + 2)),
		Retain: q.ColumnBool(col + 3), Properties: columnBlob(q, col+4), Expires: q.ColumnInt64(col + 5), Created: q.ColumnInt64(col + 6)}
}

// query runs a read statement prepared just for this call and calls fn per row.
func query(conn *sqlite.Conn, sql string, fn func(*sqlite.Stmt) error) error {
	return sqlitex.ExecuteTransient(conn, sql, &sqlitex.ExecOptions{ResultFunc: fn})
}

// columnBlob returns a copy of a blob column, nil for NULL or empty.
func columnBlob(q *sqlite.Stmt, col int) []byte {
	n := q.ColumnLen(col)
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	q.ColumnBytes(col, b)
	return b
}

// loadDeliveries streams deliveries rows and segment entries to r.Delivery merged in (client,
// message id) order: both are read in that order, rows may lie inside a segment's id range.
func (s *Store) loadDeliveries(conn *sqlite.Conn, r Recovery, shared map[uint64]*Message, stats *LoadStats) error {
	marks, err := readMarks(conn, "", 0, 0)
	if err != nil {
		return err
	}
	rows, err := conn.Prepare(`SELECT client_id, message_id, qos, packet_id, state, retain, sub_ids,
			topic, payload, msg_qos, msg_retain, props, expires, created FROM deliveries
			ORDER BY client_id, message_id;`)
	if err != nil {
		return err
	}
	defer rows.Reset()
	segs, err := conn.Prepare("SELECT client_id, first_id, body FROM segments ORDER BY client_id, first_id;")
	if err != nil {
		return err
	}
	defer segs.Reset()

	nextRow := func() (e segmentEntry, ok bool, err error) {
		if ok, err = rows.Step(); err != nil || !ok {
			return e, false, err
		}
		q := rows
		inline := q.ColumnType(7) != sqlite.TypeNull
		d := Delivery{ClientID: q.ColumnText(0), MessageID: uint64(q.ColumnInt64(1)), QoS: byte(q.ColumnInt(2)),
			PacketID: uint16(q.ColumnInt(3)), State: DeliveryState(q.ColumnInt(4)), Retain: q.ColumnBool(5)}
		if d.SubIDs, err = decodeSubIDs(columnBlob(q, 6)); err != nil {
			return e, false, err
		}
		var m *Message
		if inline {
			m = inlineMessage(q, d.MessageID, 7)
			stats.Messages++
		} else if m = shared[d.MessageID]; m == nil && r.Delivery != nil {
			return e, false, fmt.Errorf("delivery to %q references missing message %d", d.ClientID, d.MessageID)
		}
		return segmentEntry{d, m}, true, nil
	}
	var dec segmentDecoder
	var segClient string
	var segFirst int64
	nextEntry := func() (e segmentEntry, ok bool, err error) {
		for {
			d, m, ok, err := dec.next(segClient, true)
			if err != nil {
				return e, false, fmt.Errorf("segment %d of %q: %w", segFirst, segClient, err)
			}
			if ok {
				if !applyMark(marks, &d) {
					continue
				}
				stats.Messages++
				return segmentEntry{d, m}, true, nil
			}
			if ok, err = segs.Step(); err != nil || !ok {
				return e, false, err
			}
			segClient, segFirst = segs.ColumnText(0), segs.ColumnInt64(1)
			body := make([]byte, segs.ColumnLen(2))
			segs.ColumnBytes(2, body)
			dec.reset(body)
		}
	}
	row, haveRow, err := nextRow()
	if err != nil {
		return err
	}
	ent, haveEnt, err := nextEntry()
	if err != nil {
		return err
	}
	for haveRow || haveEnt {
		var e segmentEntry
		takeRow := haveRow && (!haveEnt || row.d.ClientID < ent.d.ClientID ||
			(row.d.ClientID == ent.d.ClientID && row.d.MessageID < ent.d.MessageID))
		if takeRow {
			e = row
			if row, haveRow, err = nextRow(); err != nil {
				return err
			}
		} else {
			e = ent
			if ent, haveEnt, err = nextEntry(); err != nil {
				return err
			}
		}
		stats.Deliveries++
		if r.Delivery != nil {
			if err := r.Delivery(e.d, e.m); err != nil {
				return err
			}
		}
	}
	return nil
}
