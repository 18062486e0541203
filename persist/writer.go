package persist

import (
	"strings"
	"time"

	"zombiezen.com/go/sqlite"
)

type opKind uint8

const (
	opSaveRetained opKind = iota + 1
	opDeleteRetained
	opSaveSession
	opDeleteSession
	opSaveSubscription
	opDeleteSubscription
	opAddDeliveries
	opUpdateDelivery
	opDeleteDelivery
	opAddInbound
	opDeleteInbound
	// opBarrier writes nothing: its callback runs after every op submitted before it.
	opBarrier
	// opSolo runs fn alone, between batches, managing its own transactions: recovery, cleanup.
	opSolo
)

// op is one submitted operation: a small value copied through the channel, so submitting
// allocates nothing. Which fields mean something depends on kind; pointers and slices are owned by
// the store until done is called.
type op struct {
	kind       opKind
	done       func(error)
	msg        *Message
	session    *Session
	deliveries []Delivery
	sub        Subscription // its ClientID and Filter double as the keys of other kinds
	messageID  uint64
	packetID   uint16
	state      DeliveryState
	fn         func(*sqlite.Conn) error
	// err is the outcome, set by the writer for the completer.
	err error
}

func (o *op) finish(err error) {
	if o.done != nil {
		o.done(err)
	}
}

// submit hands o to the writer, or completes it at once when there is nothing to write.
func (s *Store) submit(o op) {
	if !s.durable {
		o.finish(nil)
		return
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		o.finish(ErrClosed)
		return
	}
	s.ops <- o
	s.mu.RUnlock()
}

// SaveRetained stores m as the retained message of m.Topic, replacing any other [MQTT-3.3.1-5].
// m must not change until done is called.
func (s *Store) SaveRetained(m *Message, done func(error)) {
	s.submit(op{kind: opSaveRetained, msg: m, done: done})
}

// DeleteRetained removes the retained message of topic [MQTT-3.3.1-10].
func (s *Store) DeleteRetained(topic string, done func(error)) {
	s.submit(op{kind: opDeleteRetained, sub: Subscription{Filter: topic}, done: done})
}

// SaveSession creates or updates a durable session (its expiry, deadline and will), keeping its
// subscriptions and deliveries. sess must not change until done is called.
func (s *Store) SaveSession(sess *Session, done func(error)) {
	s.submit(op{kind: opSaveSession, session: sess, done: done})
}

// DeleteSession removes a session with its subscriptions, deliveries and inbound QoS 2 ids;
// message bodies no other session references go with it.
func (s *Store) DeleteSession(clientID string, done func(error)) {
	s.submit(op{kind: opDeleteSession, sub: Subscription{ClientID: clientID}, done: done})
}

// SaveSubscription creates or replaces the subscription (ClientID, Filter). Its session must be
// saved first (by an earlier operation).
func (s *Store) SaveSubscription(sub Subscription, done func(error)) {
	s.submit(op{kind: opSaveSubscription, sub: sub, done: done})
}

// DeleteSubscription removes the subscription (clientID, filter).
func (s *Store) DeleteSubscription(clientID, filter string, done func(error)) {
	s.submit(op{kind: opDeleteSubscription, sub: Subscription{ClientID: clientID, Filter: filter}, done: done})
}

// AddDeliveries stores msg once (m.ID from NextMessageID; a second call with the same id keeps the
// first body, and a delivery already stored stays as it was) and one delivery row per element of
// ds, all atomically: this is the durable effect
// of a QoS 1/2 PUBLISH for offline or persistent recipients. msg and ds must not change until done
// is called; each delivery's MessageID is taken from msg.
func (s *Store) AddDeliveries(msg *Message, ds []Delivery, done func(error)) {
	if len(ds) == 0 { // a body nobody references would only wait for cleanup
		if done != nil {
			done(nil)
		}
		return
	}
	s.submit(op{kind: opAddDeliveries, msg: msg, deliveries: ds, done: done})
}

// UpdateDelivery records that the delivery (clientID, messageID) was sent with packetID, or that
// its QoS 2 flow reached state.
func (s *Store) UpdateDelivery(clientID string, messageID uint64, packetID uint16, state DeliveryState, done func(error)) {
	s.submit(op{kind: opUpdateDelivery, sub: Subscription{ClientID: clientID}, messageID: messageID, packetID: packetID, state: state, done: done})
}

// DeleteDelivery removes a delivery once its flow completed (PUBACK, PUBCOMP) or it was dropped;
// the message body goes with its last delivery.
func (s *Store) DeleteDelivery(clientID string, messageID uint64, done func(error)) {
	s.submit(op{kind: opDeleteDelivery, sub: Subscription{ClientID: clientID}, messageID: messageID, done: done})
}

// AddInbound remembers an inbound QoS 2 packet id acknowledged with PUBREC [MQTT-4.3.3-9].
func (s *Store) AddInbound(clientID string, packetID uint16, done func(error)) {
	s.submit(op{kind: opAddInbound, sub: Subscription{ClientID: clientID}, packetID: packetID, done: done})
}

// DeleteInbound forgets an inbound QoS 2 packet id once PUBREL arrived [MQTT-4.3.3-11].
func (s *Store) DeleteInbound(clientID string, packetID uint16, done func(error)) {
	s.submit(op{kind: opDeleteInbound, sub: Subscription{ClientID: clientID}, packetID: packetID, done: done})
}

// Barrier calls done once every operation submitted before it has been committed (or has
// failed). The engine uses it to keep a client's acknowledgements in order when some of them
// wait for the disk and the next one has nothing to write.
func (s *Store) Barrier(done func(error)) {
	s.submit(op{kind: opBarrier, done: done})
}

// solo runs fn on the writer goroutine between batches and waits for it.
func (s *Store) solo(fn func(*sqlite.Conn) error) error {
	result := make(chan error, 1)
	s.submit(op{kind: opSolo, fn: fn, done: func(err error) { result <- err }})
	return <-result
}

// writer is the only goroutine that touches conn after Open. It commits a batch, hands it to
// the completer and starts on the next one while the completer runs the callbacks: committing
// batch n+1 overlaps the acknowledgements of batch n (a pipeline of two, as in Pebble's
// commit pipeline), and the writer never waits for a callback. It exits when ops is closed and
// drained, closing completions.
func (s *Store) writer() {
	defer close(s.completions)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	busy := false
	for {
		first, ok := <-s.ops
		if !ok {
			return
		}
		batch := append(<-s.free, first)
		open := true
		if first.kind != opSolo {
			batch, open = s.gather(batch, timer, !busy && s.commitSyncs)
		}
		s.run(batch)
		// Ops that arrived during this commit mean producers keep the writer busy: the next
		// batch is what they queued meanwhile, committed without waiting for more. Waiting
		// for batch-interval is for company under light load; under load it only held ops
		// whose producers were themselves waiting for acks of the batch before (one
		// publisher's window of 1024 against a batch of 1000: the writer and the broker
		// took turns on two cores instead of overlapping, issue 7).
		busy = len(s.ops) > 0
		s.completions <- batch
		s.tendWAL()
		if !open {
			return
		}
	}
}

// completer calls the callbacks of each batch the writer finished, in commit order, then
// returns the batch's buffer to the writer. It closes writerDone once the writer has stopped
// and every callback has run.
//
// Callbacks run here rather than on the writer: they queue acknowledgements and deliveries
// under entry locks (11% of the process's CPU in a durable QoS 1 run), time in which the writer
// could not begin the next transaction. Two buffers bound what waits: when the completer
// falls behind, the writer waits for a buffer instead of gathering more.
func (s *Store) completer() {
	defer close(s.writerDone)
	for batch := range s.completions {
		for i := range batch {
			batch[i].finish(batch[i].err)
		}
		clear(batch) // drop references so callbacks and messages can be collected
		s.free <- batch[:0]
	}
}

// gather adds to batch what is already waiting, then, when wait is set, waits up to
// batch-interval (from now) for more, until batch-size. A solo op ends the gathering: it runs
// after the batch before it.
func (s *Store) gather(batch []op, timer *time.Timer, wait bool) ([]op, bool) {
	armed := false
	defer func() {
		if armed {
			timer.Stop()
		}
	}()
	for len(batch) < cap(batch) {
		select {
		case o, ok := <-s.ops:
			if !ok {
				return batch, false
			}
			batch = append(batch, o)
			if o.kind == opSolo {
				return batch, true
			}
			continue
		default:
		}
		if !wait || s.cfg.BatchInterval <= 0 {
			return batch, true
		}
		if !armed {
			timer.Reset(s.cfg.BatchInterval)
			armed = true
		}
		select {
		case o, ok := <-s.ops:
			if !ok {
				return batch, false
			}
			batch = append(batch, o)
			if o.kind == opSolo {
				return batch, true
			}
		case <-timer.C:
			armed = false
			return batch, true
		}
	}
	return batch, true
}

// run commits the batch's ordinary ops in one transaction and then runs a trailing solo op,
// leaving each op's outcome in its err.
func (s *Store) run(batch []op) {
	n := len(batch)
	if batch[n-1].kind == opSolo {
		n--
	}
	if n > 0 {
		s.commitGroup(batch[:n])
	}
	if n < len(batch) {
		o := &batch[n]
		o.err = o.fn(s.conn)
	}
}

func (s *Store) commitGroup(ops []op) {
	start := time.Now()
	err := s.transaction(ops)
	s.observe(ops, time.Since(start))
	if err == nil {
		s.batches.Add(1)
		s.committed.Add(uint64(len(ops)))
		return
	}
	if len(ops) == 1 {
		s.failed.Add(1)
		ops[0].err = err
		return
	}
	// Find which op failed by committing each alone: its neighbours still commit, and a failing
	// disk fails them all, each with its own error.
	for i := range ops {
		err := s.transaction(ops[i : i+1])
		if err != nil {
			s.failed.Add(1)
		} else {
			s.committed.Add(1)
		}
		ops[i].err = err
	}
}

// transaction applies ops in one transaction; on any error nothing of them remains.
func (s *Store) transaction(ops []op) error {
	if err := step(s.st.begin); err != nil {
		s.rollback()
		return err
	}
	s.segsChanged = false
	s.commitTime = time.Now().UnixNano()
	for i := 0; i < len(ops); {
		// Consecutive AddDeliveries share multi-row INSERTs: one statement step per row costs
		// more than the row itself. Other kinds keep their place in the order.
		if ops[i].kind == opAddDeliveries {
			j := i + 1
			for j < len(ops) && ops[j].kind == opAddDeliveries {
				j++
			}
			if err := s.addDeliveries(ops[i:j]); err != nil {
				s.rollback()
				return err
			}
			i = j
			continue
		}
		if err := s.apply(&ops[i]); err != nil {
			s.rollback()
			return err
		}
		i++
	}
	if err := step(s.st.commit); err != nil {
		s.rollback()
		return err
	}
	return nil
}

// rollback ends a failed transaction; SQLite may already have rolled it back (disk full, I/O
// error), in which case there is nothing to do. A segment index the transaction changed is
// read back from the tables.
func (s *Store) rollback() {
	if !s.conn.AutocommitEnabled() {
		if err := step(s.st.rollback); err != nil {
			s.log.Error("persist: rollback failed", "file", s.file, "err", err)
		}
	}
	if s.segsChanged {
		s.reloadSegments()
		s.segsChanged = false
	}
}

func step(stmt *sqlite.Stmt) error {
	_, err := stmt.Step()
	if rerr := stmt.Reset(); err == nil {
		err = rerr
	}
	return err
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// apply writes one op of any kind but AddDeliveries, which transaction groups (addDeliveries).
func (s *Store) apply(o *op) error {
	st := &s.st
	switch o.kind {
	case opSaveRetained:
		m := o.msg
		q := st.saveRetained
		q.BindText(1, m.Topic)
		q.BindBytes(2, m.Payload)
		q.BindInt64(3, int64(m.QoS))
		bindBlob(q, 4, m.Properties)
		q.BindInt64(5, m.Expires)
		q.BindInt64(6, m.Created)
		return step(q)
	case opDeleteRetained:
		st.deleteRetained.BindText(1, o.sub.Filter)
		return step(st.deleteRetained)
	case opSaveSession:
		return s.saveSession(o.session)
	case opDeleteSession:
		return s.deleteSession(o.sub.ClientID)
	case opSaveSubscription:
		q, sub := st.saveSubscription, &o.sub
		q.BindText(1, sub.ClientID)
		q.BindText(2, sub.Filter)
		q.BindInt64(3, int64(sub.QoS))
		q.BindInt64(4, boolInt(sub.NoLocal))
		q.BindInt64(5, boolInt(sub.RetainAsPublished))
		q.BindInt64(6, int64(sub.RetainHandling))
		q.BindInt64(7, int64(sub.ID))
		return step(q)
	case opDeleteSubscription:
		st.deleteSubscription.BindText(1, o.sub.ClientID)
		st.deleteSubscription.BindText(2, o.sub.Filter)
		return step(st.deleteSubscription)
	case opUpdateDelivery:
		return s.updateDelivery(o.sub.ClientID, o.messageID, o.packetID, o.state)
	case opDeleteDelivery:
		return s.deleteDelivery(o.sub.ClientID, o.messageID)
	case opAddInbound:
		st.addInbound.BindText(1, o.sub.ClientID)
		st.addInbound.BindInt64(2, int64(o.packetID))
		return step(st.addInbound)
	case opDeleteInbound:
		st.deleteInbound.BindText(1, o.sub.ClientID)
		st.deleteInbound.BindInt64(2, int64(o.packetID))
		return step(st.deleteInbound)
	case opBarrier:
		return nil
	}
	panic("persist: unknown op kind")
}

// created is when m was accepted: m.Created, or when 0 the time this transaction began (the
// engine leaves it so: a clock read per message was 5% of a durable publish's CPU where the
// clock is not in the vDSO, and a batch is milliseconds long).
func (s *Store) created(m *Message) int64 {
	if m.Created != 0 {
		return m.Created
	}
	return s.commitTime
}

// bindBlob binds b, or NULL for an empty b so that absent and empty read back alike (nil).
func bindBlob(q *sqlite.Stmt, i int, b []byte) {
	if len(b) == 0 {
		q.BindNull(i)
		return
	}
	q.BindBytes(i, b)
}

func (s *Store) saveSession(sess *Session) error {
	q := s.st.saveSession
	q.BindText(1, sess.ClientID)
	q.BindInt64(2, int64(sess.Expiry))
	q.BindInt64(3, sess.ExpiresAt)
	if w := sess.Will; w != nil {
		q.BindText(4, w.Message.Topic)
		q.BindBytes(5, w.Message.Payload)
		q.BindInt64(6, int64(w.Message.QoS))
		q.BindInt64(7, boolInt(w.Message.Retain))
		bindBlob(q, 8, w.Message.Properties)
		q.BindInt64(9, w.Message.Expires)
		q.BindInt64(10, w.Message.Created)
		q.BindInt64(11, int64(w.Delay))
	} else {
		for i := 4; i <= 11; i++ {
			q.BindNull(i)
		}
	}
	return step(q)
}

func (s *Store) deleteSession(clientID string) error {
	for _, q := range [...]*sqlite.Stmt{s.st.deleteSessionSubs, s.st.deleteSessionDeliveries, s.st.deleteSessionSegments,
		s.st.deleteSessionMarks, s.st.deleteSessionInbound, s.st.deleteSession} {
		q.BindText(1, clientID)
		if err := step(q); err != nil {
			return err
		}
	}
	if _, ok := s.segs[clientID]; ok {
		delete(s.segs, clientID)
		s.segsChanged = true
	}
	return nil
}

// deliveryRow is one delivery row waiting for its multi-row INSERT; inline says the message's
// body goes in the row (its only durable recipient) rather than in messages.
type deliveryRow struct {
	d      *Delivery
	m      *Message
	inline bool
}

// deliveryChunks are the row counts of the prepared multi-row delivery INSERTs, largest first:
// a batch of n rows takes n/64 steps of the largest and at most 7+7 of the smaller ones.
var deliveryChunks = [...]int{64, 8, 1}

// addDeliveries writes the messages and deliveries of consecutive AddDeliveries ops: a
// message with one durable recipient goes to that client's segment of this commit when it has
// enough of them (splitSegments), else inline in a row; shared bodies to messages.
func (s *Store) addDeliveries(ops []op) error {
	s.rows, s.single = s.rows[:0], s.single[:0]
	defer func() { clear(s.rows); clear(s.single); s.rows, s.single = s.rows[:0], s.single[:0] }()
	for i := range ops {
		if ds := ops[i].deliveries; len(ds) == 1 {
			s.single = append(s.single, deliveryRow{d: &ds[0], m: ops[i].msg, inline: true})
		}
	}
	if err := s.splitSegments(); err != nil {
		return err
	}
	rows := s.rows
	for i := range ops {
		m, ds := ops[i].msg, ops[i].deliveries
		if len(ds) == 1 {
			continue // splitSegments placed it
		}
		{
			q := s.st.insertMessage
			q.BindInt64(1, int64(m.ID))
			q.BindText(2, m.Topic)
			q.BindBytes(3, m.Payload)
			q.BindInt64(4, int64(m.QoS))
			q.BindInt64(5, boolInt(m.Retain))
			bindBlob(q, 6, m.Properties)
			q.BindInt64(7, m.Expires)
			q.BindInt64(8, s.created(m))
			if err := step(q); err != nil {
				return err
			}
		}
		for k := range ds {
			rows = append(rows, deliveryRow{d: &ds[k], m: m})
		}
	}
	s.rows = rows
	for len(rows) > 0 {
		c := 0
		for rows := len(rows); deliveryChunks[c] > rows; c++ {
		}
		n := deliveryChunks[c]
		if err := s.insertDeliveries(s.st.insertDeliveries[c], rows[:n]); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// deliveryColumns is the number of parameters of one row of insertDeliveries.
const deliveryColumns = 14

func (s *Store) insertDeliveries(q *sqlite.Stmt, rows []deliveryRow) error {
	for i := range rows {
		r, p := &rows[i], i*deliveryColumns
		d, m := r.d, r.m
		q.BindText(p+1, d.ClientID)
		q.BindInt64(p+2, int64(m.ID))
		q.BindInt64(p+3, int64(d.QoS))
		q.BindInt64(p+4, int64(d.PacketID))
		q.BindInt64(p+5, int64(d.State))
		q.BindInt64(p+6, boolInt(d.Retain))
		if len(d.SubIDs) == 0 {
			q.BindNull(p + 7)
		} else {
			s.scratch = appendSubIDs(s.scratch[:0], d.SubIDs)
			q.BindBytes(p+7, s.scratch)
		}
		if r.inline {
			q.BindText(p+8, m.Topic)
			q.BindBytes(p+9, m.Payload)
			q.BindInt64(p+10, int64(m.QoS))
			q.BindInt64(p+11, boolInt(m.Retain))
			bindBlob(q, p+12, m.Properties)
			q.BindInt64(p+13, m.Expires)
			q.BindInt64(p+14, s.created(m))
		} else {
			for c := 8; c <= 12; c++ {
				q.BindNull(p + c)
			}
			q.BindInt64(p+13, 0)
			q.BindInt64(p+14, 0)
		}
	}
	return step(q)
}

// insertDeliveriesSQL is the multi-row delivery INSERT of n rows. A delivery stored again
// (same client and message) is kept as it was.
func insertDeliveriesSQL(n int) string {
	var b strings.Builder
	// OR IGNORE, not an upsert nor the default ABORT: a statement that may abort halfway keeps
	// a statement journal (a copy of every page it touches: ~20% of the writer's CPU). Every
	// AddDeliveries has a fresh message id, so a conflict means the same op was stored before.
	b.WriteString(`INSERT OR IGNORE INTO deliveries (client_id, message_id, qos, packet_id, state, retain, sub_ids,
		topic, payload, msg_qos, msg_retain, props, expires, created) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
	}
	b.WriteString(";")
	return b.String()
}

// statements are the writer's prepared statements, prepared once at open and reused for every op.
type statements struct {
	begin, commit, rollback                                          *sqlite.Stmt
	saveRetained, deleteRetained                                     *sqlite.Stmt
	saveSession, deleteSession                                       *sqlite.Stmt
	deleteSessionSubs, deleteSessionDeliveries, deleteSessionInbound *sqlite.Stmt
	saveSubscription, deleteSubscription                             *sqlite.Stmt
	insertMessage, updateDelivery, deleteDelivery                    *sqlite.Stmt
	insertSegment, readSegment, deleteSegment, deleteSegmentMarks    *sqlite.Stmt
	doneMarks, markDone, markState                                   *sqlite.Stmt
	deleteSessionSegments, deleteSessionMarks                        *sqlite.Stmt
	addInbound, deleteInbound                                        *sqlite.Stmt
	insertDeliveries                                                 [len(deliveryChunks)]*sqlite.Stmt
}

func (st *statements) prepare(conn *sqlite.Conn) error {
	for _, p := range []struct {
		dst   **sqlite.Stmt
		query string
	}{
		{&st.begin, "BEGIN IMMEDIATE;"},
		{&st.commit, "COMMIT;"},
		{&st.rollback, "ROLLBACK;"},
		{&st.saveRetained, `INSERT INTO retained (topic, payload, qos, props, expires, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
			ON CONFLICT (topic) DO UPDATE SET payload = ?2, qos = ?3, props = ?4, expires = ?5, created = ?6;`},
		{&st.deleteRetained, "DELETE FROM retained WHERE topic = ?1;"},
		{&st.saveSession, `INSERT INTO sessions (client_id, expiry, expires_at, will_topic, will_payload, will_qos, will_retain,
				will_props, will_expires, will_created, will_delay) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
			ON CONFLICT (client_id) DO UPDATE SET expiry = ?2, expires_at = ?3, will_topic = ?4, will_payload = ?5,
				will_qos = ?6, will_retain = ?7, will_props = ?8, will_expires = ?9, will_created = ?10, will_delay = ?11;`},
		{&st.deleteSession, "DELETE FROM sessions WHERE client_id = ?1;"},
		{&st.deleteSessionSubs, "DELETE FROM subscriptions WHERE client_id = ?1;"},
		{&st.deleteSessionDeliveries, "DELETE FROM deliveries WHERE client_id = ?1;"},
		{&st.deleteSessionInbound, "DELETE FROM inbound WHERE client_id = ?1;"},
		{&st.saveSubscription, `INSERT INTO subscriptions (client_id, filter, qos, no_local, rap, retain_handling, sub_id)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
			ON CONFLICT (client_id, filter) DO UPDATE SET qos = ?3, no_local = ?4, rap = ?5, retain_handling = ?6, sub_id = ?7;`},
		{&st.deleteSubscription, "DELETE FROM subscriptions WHERE client_id = ?1 AND filter = ?2;"},
		{&st.insertMessage, `INSERT INTO messages (id, topic, payload, qos, retain, props, expires, created)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING;`},
		{&st.updateDelivery, "UPDATE deliveries SET packet_id = ?1, state = ?2 WHERE client_id = ?3 AND message_id = ?4;"},
		{&st.deleteDelivery, "DELETE FROM deliveries WHERE client_id = ?1 AND message_id = ?2;"},
		{&st.insertSegment, `INSERT INTO segments (client_id, first_id, last_id, count, created, expires, body)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7);`},
		{&st.readSegment, "SELECT last_id, body FROM segments WHERE client_id = ?1 AND first_id = ?2;"},
		{&st.deleteSegment, "DELETE FROM segments WHERE client_id = ?1 AND first_id = ?2;"},
		{&st.deleteSegmentMarks, "DELETE FROM segment_marks WHERE client_id = ?1 AND message_id BETWEEN ?2 AND ?3;"},
		{&st.doneMarks, "SELECT message_id FROM segment_marks WHERE client_id = ?1 AND message_id BETWEEN ?2 AND ?3 AND done ORDER BY message_id;"},
		{&st.markDone, `INSERT INTO segment_marks (client_id, message_id, packet_id, state, done) VALUES (?1, ?2, 0, 0, 1)
			ON CONFLICT (client_id, message_id) DO UPDATE SET done = 1 WHERE done = 0;`},
		{&st.markState, `INSERT INTO segment_marks (client_id, message_id, packet_id, state, done) VALUES (?1, ?2, ?3, ?4, 0)
			ON CONFLICT (client_id, message_id) DO UPDATE SET packet_id = ?3, state = ?4;`},
		{&st.deleteSessionSegments, "DELETE FROM segments WHERE client_id = ?1;"},
		{&st.deleteSessionMarks, "DELETE FROM segment_marks WHERE client_id = ?1;"},
		{&st.addInbound, "INSERT INTO inbound (client_id, packet_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING;"},
		{&st.deleteInbound, "DELETE FROM inbound WHERE client_id = ?1 AND packet_id = ?2;"},
	} {
		stmt, err := conn.Prepare(p.query)
		if err != nil {
			return err
		}
		*p.dst = stmt
	}
	for i, n := range deliveryChunks {
		stmt, err := conn.Prepare(insertDeliveriesSQL(n))
		if err != nil {
			return err
		}
		st.insertDeliveries[i] = stmt
	}
	return nil
}
