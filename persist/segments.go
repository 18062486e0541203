package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"zombiezen.com/go/sqlite"
)

// Segments: the deliveries of one client accepted in one commit stored as one row (issue 7's
// throughput target: one b-tree insert per delivery row cost the writer ~2.4 µs per message).
//
// segmentIndex invariants (owned by the writer goroutine):
//   - A client's segments have disjoint id ranges and are kept in first-id order, here as in
//     the table; each entry of a segment body is in id order. A delivery whose id is not above
//     the client's last segment (ids are taken before submission, so two publishers can submit
//     out of order) goes to a deliveries row instead: rows may lie inside a segment's range,
//     never the other way round.
//   - A delivery in a segment is pending until segment_marks holds done = 1 for it; a mark's
//     packet id and state, when present, override the entry's. A segment goes, with its marks,
//     when none of its entries is pending. live is a hint of the pending count, checked
//     against the table before a segment is deleted, so a mark for an id the segment does not
//     hold (an ack of a row already gone) can delay a deletion but never cause one.
//   - The index is exactly the table after every committed transaction; a rolled-back one
//     reloads it.
//
// Design: per-commit, per-client segment rows plus appended marks, compacted by deleting a
// segment once all its entries are done. Rejected: a rowid-keyed log of single deliveries with
// the (client, id) key kept in memory (one row per delivery still, and an index entry per
// queued message in memory, which spilled queues exist to avoid); rewriting a segment on every
// acknowledgement (a whole blob written per ack).
type segmentIndex map[string][]segmentRef

// segmentRef is one segment row as the index knows it.
type segmentRef struct {
	first, last uint64
	live        int32
}

// segmentMinEntries is the fewest deliveries of one client in one commit worth a segment; fewer
// go to rows, so the index holds at most one entry per four stored deliveries.
const segmentMinEntries = 4

// segmentMaxBytes ends a segment body early. The body, SQLite's copy of the bound blob and the
// record it builds each stay under the 16 KB above which the modernc allocator maps and unmaps
// memory per allocation (mmap + munmap were 16% of the writer with 100 KB bodies); a page-in
// of a few messages also reads little.
const segmentMaxBytes = 12 << 10

// find returns the segment of clientID whose range holds id, or nil.
func (x segmentIndex) find(clientID string, id uint64) *segmentRef {
	segs := x[clientID]
	i, _ := slices.BinarySearchFunc(segs, id, func(r segmentRef, id uint64) int {
		switch {
		case r.first > id:
			return 1
		case r.last < id:
			return -1
		}
		return 0
	})
	if i < len(segs) && segs[i].first <= id && id <= segs[i].last {
		return &segs[i]
	}
	return nil
}

// lastID is the highest id in clientID's segments, 0 when it has none.
func (x segmentIndex) lastID(clientID string) uint64 {
	segs := x[clientID]
	if len(segs) == 0 {
		return 0
	}
	return segs[len(segs)-1].last
}

func (x segmentIndex) remove(clientID string, first uint64) {
	segs := x[clientID]
	for i := range segs {
		if segs[i].first == first {
			segs = slices.Delete(segs, i, i+1)
			break
		}
	}
	// An emptied client keeps its entry and slice (until its session goes): an online
	// subscriber empties it after every batch, and re-adding cost two allocations each time.
	x[clientID] = segs
}

// loadSegmentIndex reads the index from the tables: every segment with its count less its done
// marks.
func loadSegmentIndex(conn *sqlite.Conn) (segmentIndex, error) {
	x := make(segmentIndex)
	err := query(conn, `SELECT g.client_id, g.first_id, g.last_id, g.count - (SELECT count(*) FROM segment_marks m
			WHERE m.client_id = g.client_id AND m.message_id BETWEEN g.first_id AND g.last_id AND m.done)
		FROM segments g ORDER BY g.client_id, g.first_id;`, func(q *sqlite.Stmt) error {
		c := q.ColumnText(0)
		x[c] = append(x[c], segmentRef{first: uint64(q.ColumnInt64(1)), last: uint64(q.ColumnInt64(2)), live: int32(q.ColumnInt64(3))})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("persist: read segments: %w", err)
	}
	return x, nil
}

// reloadSegments rebuilds the index after a rolled-back transaction changed it.
func (s *Store) reloadSegments() {
	x, err := loadSegmentIndex(s.conn)
	if err != nil {
		// The next op touching a segment finds the index stale; say so loudly.
		s.log.Error("persist: reload segment index failed", "file", s.file, "err", err)
		return
	}
	s.segs = x
}

// Entry flags: 1 retain as sent, 2 message retain; sameTopic and sameCreated say the field is
// left out, equal to the previous entry's in the body (schema 4: the entries of one commit
// mostly share both, which were 20 of a 64-byte message's 97 bytes).
const (
	flagRetain      = 1
	flagMsgRetain   = 2
	flagSameTopic   = 4
	flagSameCreated = 8
)

// segmentEncoder appends the entries of one segment body. Layout of an entry: uvarint id, qos,
// uvarint packet id, state, flags, message qos, then topic (unless flagSameTopic), payload,
// properties and subscription ids each as uvarint length + bytes, then varint expires and
// created (unless flagSameCreated).
type segmentEncoder struct {
	started bool
	topic   string
	created int64
}

// append encodes d with its message m at the end of b.
func (e *segmentEncoder) append(b []byte, d *Delivery, m *Message, created int64) []byte {
	b = binary.AppendUvarint(b, m.ID)
	flags := byte(0)
	if d.Retain {
		flags |= flagRetain
	}
	if m.Retain {
		flags |= flagMsgRetain
	}
	sameTopic := e.started && m.Topic == e.topic
	sameCreated := e.started && created == e.created
	if sameTopic {
		flags |= flagSameTopic
	}
	if sameCreated {
		flags |= flagSameCreated
	}
	e.started, e.topic, e.created = true, m.Topic, created
	b = append(b, d.QoS)
	b = binary.AppendUvarint(b, uint64(d.PacketID))
	b = append(b, byte(d.State), flags, m.QoS)
	if !sameTopic {
		b = binary.AppendUvarint(b, uint64(len(m.Topic)))
		b = append(b, m.Topic...)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Payload)))
	b = append(b, m.Payload...)
	b = binary.AppendUvarint(b, uint64(len(m.Properties)))
	b = append(b, m.Properties...)
	n := 0
	for _, id := range d.SubIDs {
		n += uvarintLen(uint64(id))
	}
	b = binary.AppendUvarint(b, uint64(n))
	b = appendSubIDs(b, d.SubIDs)
	b = binary.AppendVarint(b, m.Expires)
	if !sameCreated {
		b = binary.AppendVarint(b, created)
	}
	return b
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

var errCorruptSegment = errors.New("persist: corrupt segment")

// segmentDecoder walks the entries of one segment body, from its start: an entry may take its
// topic and created from the one before it.
type segmentDecoder struct {
	b []byte
	// The previous entry's topic (and, once next made it a string, topicString) and created.
	started     bool
	topic       []byte
	topicString string
	created     int64
}

// reset starts on body.
func (r *segmentDecoder) reset(body []byte) { *r = segmentDecoder{b: body} }

func (r *segmentDecoder) uvarint() (uint64, error) {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		return 0, errCorruptSegment
	}
	r.b = r.b[n:]
	return v, nil
}

func (r *segmentDecoder) bytes() ([]byte, error) {
	n, err := r.uvarint()
	if err != nil || uint64(len(r.b)) < n {
		return nil, errCorruptSegment
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v, nil
}

// next decodes the next entry; with full unset it returns only the id (ok false at the end).
// Byte fields of the result are fresh copies, owned by the caller.
func (r *segmentDecoder) next(clientID string, full bool) (d Delivery, m *Message, ok bool, err error) {
	id, e, ok, err := r.entry()
	if !ok || err != nil {
		return d, nil, false, err
	}
	d = Delivery{ClientID: clientID, MessageID: id, QoS: e.qos, PacketID: e.packetID, State: e.state, Retain: e.flags&flagRetain != 0}
	if !full {
		m = &Message{ID: id, Expires: e.expires, Created: r.created}
		return d, m, true, nil
	}
	if d.SubIDs, err = decodeSubIDs(e.subIDs); err != nil {
		return d, nil, false, err
	}
	if r.topicString == "" { // entry forgot it when the topic changed
		r.topicString = string(r.topic) // entries sharing a topic share its string
	}
	m = &Message{ID: id, Topic: r.topicString, Payload: clone(e.payload), QoS: e.msgQoS, Retain: e.flags&flagMsgRetain != 0,
		Properties: clone(e.props), Expires: e.expires, Created: r.created}
	return d, m, true, nil
}

// rawEntry is an entry's fields as they lie in the body; topic and created are the decoder's.
type rawEntry struct {
	qos, flags, msgQoS     byte
	state                  DeliveryState
	packetID               uint16
	payload, props, subIDs []byte
	expires                int64
}

// entry decodes the next entry's id and fields without copying (ok false at the end), and
// makes its topic and created the decoder's.
func (r *segmentDecoder) entry() (id uint64, e rawEntry, ok bool, err error) {
	if len(r.b) == 0 {
		return 0, e, false, nil
	}
	if id, err = r.uvarint(); err != nil {
		return 0, e, false, err
	}
	if len(r.b) < 1 {
		return 0, e, false, errCorruptSegment
	}
	e.qos = r.b[0]
	r.b = r.b[1:]
	pid, err := r.uvarint()
	if err != nil || len(r.b) < 3 {
		return 0, e, false, errCorruptSegment
	}
	e.packetID = uint16(pid)
	e.state, e.flags, e.msgQoS = DeliveryState(r.b[0]), r.b[1], r.b[2]
	r.b = r.b[3:]
	switch {
	case e.flags&flagSameTopic == 0:
		topic, err := r.bytes()
		if err != nil {
			return 0, e, false, err
		}
		if !r.started || string(topic) != string(r.topic) {
			r.topicString = ""
		}
		r.topic = topic
	case !r.started:
		return 0, e, false, errCorruptSegment // nothing to repeat
	}
	if e.payload, err = r.bytes(); err != nil {
		return 0, e, false, err
	}
	if e.props, err = r.bytes(); err != nil {
		return 0, e, false, err
	}
	if e.subIDs, err = r.bytes(); err != nil {
		return 0, e, false, err
	}
	expires, n := binary.Varint(r.b)
	if n <= 0 {
		return 0, e, false, errCorruptSegment
	}
	r.b = r.b[n:]
	e.expires = expires
	switch {
	case e.flags&flagSameCreated == 0:
		created, n := binary.Varint(r.b)
		if n <= 0 {
			return 0, e, false, errCorruptSegment
		}
		r.b = r.b[n:]
		r.created = created
	case !r.started:
		return 0, e, false, errCorruptSegment
	}
	r.started = true
	return id, e, true, nil
}

// clone copies b, nil for empty (as columnBlob reads NULL or empty).
func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// mark is a segment entry's row in segment_marks.
type mark struct {
	packetID uint16
	state    DeliveryState
	done     bool
}

type markKey struct {
	client string
	id     uint64
}

// readMarks reads clientID's marks with ids in [from, to] ("" and 0..max: all of them).
func readMarks(conn *sqlite.Conn, clientID string, from, to uint64) (map[markKey]mark, error) {
	marks := make(map[markKey]mark)
	sql := "SELECT client_id, message_id, packet_id, state, done FROM segment_marks;"
	if clientID != "" {
		sql = "SELECT client_id, message_id, packet_id, state, done FROM segment_marks WHERE client_id = ? AND message_id BETWEEN ? AND ?;"
	}
	q, err := conn.Prepare(sql)
	if err != nil {
		return nil, err
	}
	if clientID != "" {
		q.BindText(1, clientID)
		q.BindInt64(2, int64(from))
		q.BindInt64(3, int64(min(to, 1<<63-1)))
	}
	err = eachRow(q, func(q *sqlite.Stmt) {
		marks[markKey{q.ColumnText(0), uint64(q.ColumnInt64(1))}] = mark{packetID: uint16(q.ColumnInt(2)), state: DeliveryState(q.ColumnInt(3)), done: q.ColumnBool(4)}
	})
	return marks, err
}

// eachRow steps q to its last row, calling each for every row, and resets it.
func eachRow(q *sqlite.Stmt, each func(*sqlite.Stmt)) error {
	for {
		row, err := q.Step()
		if err != nil {
			q.Reset()
			return err
		}
		if !row {
			return q.Reset()
		}
		each(q)
	}
}

// readSegmentBody reads the body of client's segment that starts at first; found is false
// when there is no such row.
func (s *Store) readSegmentBody(client string, first uint64) (body []byte, found bool, err error) {
	q := s.st.readSegment
	q.BindText(1, client)
	q.BindInt64(2, int64(first))
	row, err := q.Step()
	if err != nil || !row {
		q.Reset()
		return nil, false, err
	}
	body = make([]byte, q.ColumnLen(1))
	q.ColumnBytes(1, body)
	return body, true, q.Reset()
}

// applyMark folds a mark into a decoded entry; it reports false for a done entry.
func applyMark(marks map[markKey]mark, d *Delivery) bool {
	mk, ok := marks[markKey{d.ClientID, d.MessageID}]
	if !ok {
		return true
	}
	if mk.done {
		return false
	}
	d.PacketID, d.State = mk.packetID, mk.state
	return true
}

// splitSegments takes the single-recipient rows of a run of AddDeliveries (s.single) and writes
// each client's share as segments when it has enough of them above its last segment; every
// other row goes back to s.rows for the multi-row INSERT.
func (s *Store) splitSegments() error {
	single := s.single
	if len(single) == 0 {
		return nil
	}
	less := func(a, b deliveryRow) int {
		if c := strings.Compare(a.d.ClientID, b.d.ClientID); c != 0 {
			return c
		}
		switch {
		case a.m.ID < b.m.ID:
			return -1
		case a.m.ID > b.m.ID:
			return 1
		}
		return 0
	}
	if !slices.IsSortedFunc(single, less) {
		slices.SortStableFunc(single, less)
	}
	for start := 0; start < len(single); {
		client := single[start].d.ClientID
		end := start + 1
		for end < len(single) && single[end].d.ClientID == client {
			end++
		}
		group := single[start:end]
		start = end
		last := s.segs.lastID(client)
		k := 0
		for k < len(group) && group[k].m.ID <= last {
			k++
		}
		s.rows = append(s.rows, group[:k]...) // out of order: rows
		group = group[k:]
		if len(group) < segmentMinEntries {
			s.rows = append(s.rows, group...)
			continue
		}
		for len(group) > 0 {
			n, err := s.insertSegment(client, group)
			if err != nil {
				return err
			}
			group = group[n:]
		}
	}
	return nil
}

// insertSegment writes a prefix of rows (one client, ascending ids) as one segment, up to
// segmentMaxBytes, and returns how many it took.
func (s *Store) insertSegment(client string, rows []deliveryRow) (int, error) {
	b := s.segBuf[:0]
	var enc segmentEncoder
	created, expires := s.created(rows[0].m), int64(0)
	n := 0
	for n < len(rows) && (n == 0 || len(b) < segmentMaxBytes) {
		r := &rows[n]
		c := s.created(r.m)
		b = enc.append(b, r.d, r.m, c)
		created = min(created, c)
		if e := r.m.Expires; e > 0 && (expires == 0 || e < expires) {
			expires = e
		}
		n++
	}
	s.segBuf = b
	first, last := rows[0].m.ID, rows[n-1].m.ID
	q := s.st.insertSegment
	q.BindText(1, client)
	q.BindInt64(2, int64(first))
	q.BindInt64(3, int64(last))
	q.BindInt64(4, int64(n))
	q.BindInt64(5, created)
	q.BindInt64(6, expires)
	q.BindBytes(7, b)
	if err := step(q); err != nil {
		return 0, err
	}
	s.segsChanged = true
	key := client
	if _, ok := s.segs[client]; !ok {
		key = strings.Clone(client) // the op's string is the engine's; keep our own
	}
	s.segs[key] = append(s.segs[key], segmentRef{first: first, last: last, live: int32(n)})
	return n, nil
}

// deleteDelivery removes a delivery wherever it is: its row, or its segment entry (a done mark,
// and the segment itself once nothing in it is pending).
func (s *Store) deleteDelivery(clientID string, id uint64) error {
	q := s.st.deleteDelivery
	q.BindText(1, clientID)
	q.BindInt64(2, int64(id))
	if err := step(q); err != nil {
		return err
	}
	ref := s.segs.find(clientID, id)
	if ref == nil || s.conn.Changes() > 0 {
		return nil
	}
	_, err := s.markSegmentDone(clientID, id, ref)
	return err
}

// markSegmentDone marks entry id of ref's segment done, deleting the segment when it was the
// last pending one; it reports whether the entry was pending.
func (s *Store) markSegmentDone(clientID string, id uint64, ref *segmentRef) (bool, error) {
	q := s.st.markDone
	q.BindText(1, clientID)
	q.BindInt64(2, int64(id))
	if err := step(q); err != nil {
		return false, err
	}
	if s.conn.Changes() == 0 {
		return false, nil // already done
	}
	s.segsChanged = true
	if ref.live--; ref.live > 0 {
		return true, nil
	}
	return true, s.collectSegment(clientID, ref)
}

// expireSegments marks done up to limit (all when negative) pending segment entries past
// their expiry at now or created before cutoff (0: no age limit), and returns how many.
func (s *Store) expireSegments(conn *sqlite.Conn, now, cutoff int64, limit int) (int, error) {
	type segKey struct {
		client string
		first  uint64
	}
	found, err := selectColumn(conn, "SELECT client_id, first_id FROM segments WHERE (expires > 0 AND expires <= ?1) OR created < ?2;",
		func(q *sqlite.Stmt) segKey { return segKey{q.ColumnText(0), uint64(q.ColumnInt64(1))} }, now, cutoff)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range found {
		ref := s.segs.find(k.client, k.first)
		if ref == nil {
			continue
		}
		last := ref.last
		body, found, err := s.readSegmentBody(k.client, k.first)
		if err != nil {
			return n, err
		}
		if !found {
			continue
		}
		r := segmentDecoder{b: body}
		for limit < 0 || n < limit {
			_, m, ok, err := r.next(k.client, false)
			if err != nil {
				return n, fmt.Errorf("segment %d of %q: %w", k.first, k.client, err)
			}
			if !ok {
				break
			}
			if (m.Expires > 0 && m.Expires <= now) || m.Created < cutoff {
				// The segment may go with its last entry: look it up again each time.
				ref := s.segs.find(k.client, m.ID)
				if ref == nil || ref.last != last {
					break
				}
				marked, err := s.markSegmentDone(k.client, m.ID, ref)
				if err != nil {
					return n, err
				}
				if marked {
					n++
				}
			}
		}
	}
	return n, nil
}

// collectSegment deletes ref's segment and its marks when none of its entries is pending, and
// otherwise corrects ref.live to the count the tables give.
func (s *Store) collectSegment(clientID string, ref *segmentRef) error {
	pending, err := s.pendingInSegment(clientID, ref.first)
	if err != nil {
		return err
	}
	if pending > 0 {
		ref.live = int32(pending)
		return nil
	}
	q := s.st.deleteSegment
	q.BindText(1, clientID)
	q.BindInt64(2, int64(ref.first))
	if err := step(q); err != nil {
		return err
	}
	q = s.st.deleteSegmentMarks
	q.BindText(1, clientID)
	q.BindInt64(2, int64(ref.first))
	q.BindInt64(3, int64(ref.last))
	if err := step(q); err != nil {
		return err
	}
	s.segs.remove(clientID, ref.first)
	return nil
}

// pendingInSegment counts the entries of segment (clientID, first) without a done mark.
func (s *Store) pendingInSegment(clientID string, first uint64) (int, error) {
	q := s.st.readSegment
	q.BindText(1, clientID)
	q.BindInt64(2, int64(first))
	row, err := q.Step()
	if err != nil || !row {
		q.Reset()
		return 0, err
	}
	s.segBuf = append(s.segBuf[:0], make([]byte, q.ColumnLen(1))...)
	q.ColumnBytes(1, s.segBuf)
	last := uint64(q.ColumnInt64(0))
	if err := q.Reset(); err != nil {
		return 0, err
	}
	done := s.doneIDs[:0]
	mq := s.st.doneMarks
	mq.BindText(1, clientID)
	mq.BindInt64(2, int64(first))
	mq.BindInt64(3, int64(last))
	for {
		row, err := mq.Step()
		if err != nil {
			mq.Reset()
			return 0, err
		}
		if !row {
			break
		}
		done = append(done, uint64(mq.ColumnInt64(0)))
	}
	s.doneIDs = done
	if err := mq.Reset(); err != nil {
		return 0, err
	}
	pending := 0
	var r segmentDecoder
	r.reset(s.segBuf)
	for {
		id, ok, err := r.skip()
		if err != nil {
			return 0, err
		}
		if !ok {
			return pending, nil
		}
		for len(done) > 0 && done[0] < id {
			done = done[1:]
		}
		if len(done) == 0 || done[0] != id {
			pending++
		}
	}
}

// skip returns the id of the next entry and moves past it, allocating nothing.
func (r *segmentDecoder) skip() (uint64, bool, error) {
	id, _, ok, err := r.entry()
	return id, ok, err
}

// updateDelivery records a delivery's packet id and state in its row, or as its segment
// entry's mark.
func (s *Store) updateDelivery(clientID string, id uint64, packetID uint16, state DeliveryState) error {
	q := s.st.updateDelivery
	q.BindInt64(1, int64(packetID))
	q.BindInt64(2, int64(state))
	q.BindText(3, clientID)
	q.BindInt64(4, int64(id))
	if err := step(q); err != nil {
		return err
	}
	if s.conn.Changes() > 0 || s.segs.find(clientID, id) == nil {
		return nil
	}
	q = s.st.markState
	q.BindText(1, clientID)
	q.BindInt64(2, int64(id))
	q.BindInt64(3, int64(packetID))
	q.BindInt64(4, int64(state))
	return step(q)
}

// segmentEntry is one decoded pending entry of a segment.
type segmentEntry struct {
	d Delivery
	m *Message
}

// readSegmentEntries decodes the pending entries of clientID's segments with ids >= fromID, in
// id order, at most limit.
func (s *Store) readSegmentEntries(conn *sqlite.Conn, clientID string, fromID uint64, limit int) ([]segmentEntry, error) {
	segs := s.segs[clientID]
	i, _ := slices.BinarySearchFunc(segs, fromID, func(r segmentRef, id uint64) int {
		if r.last < id {
			return -1
		}
		return 1
	})
	if i == len(segs) {
		return nil, nil
	}
	marks, err := readMarks(conn, clientID, fromID, segs[len(segs)-1].last)
	if err != nil {
		return nil, err
	}
	var out []segmentEntry
	for ; i < len(segs) && len(out) < limit; i++ {
		body, found, err := s.readSegmentBody(clientID, segs[i].first)
		if err == nil && !found {
			err = fmt.Errorf("segment %d of %q missing", segs[i].first, clientID)
		}
		if err != nil {
			return nil, err
		}
		var r segmentDecoder
		r.reset(body)
		for len(out) < limit {
			if id, n := binary.Uvarint(r.b); n > 0 && id < fromID {
				// Before the page: stepped over without copying its bytes.
				if _, _, err := r.skip(); err != nil {
					return nil, fmt.Errorf("segment %d of %q: %w", segs[i].first, clientID, err)
				}
				continue
			}
			d, m, ok, err := r.next(clientID, true)
			if err != nil {
				return nil, fmt.Errorf("segment %d of %q: %w", segs[i].first, clientID, err)
			}
			if !ok {
				break
			}
			if !applyMark(marks, &d) {
				continue
			}
			out = append(out, segmentEntry{d, m})
		}
	}
	return out, nil
}
