package persist

import (
	"fmt"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// ReadDeliveries reads, in message id order, up to limit deliveries of clientID whose message id
// is at least fromID, each with its message, and hands them to done together with the error (on
// error the slice is empty). The read runs on the writer between batches, so it sees every
// operation submitted before it.
//
// It is how QoS 1/2 messages of a persistent session wait in the store rather than in memory: the
// engine stops queueing a session's stored deliveries in memory when its queue is full and reads
// them back here as the queue drains (DESIGN.md, slow consumers). done runs on the completer, as
// every callback: it must not block nor submit another operation.
func (s *Store) ReadDeliveries(clientID string, fromID uint64, limit int, done func([]StoredDelivery, error)) {
	if limit <= 0 || !s.durable {
		done(nil, nil)
		return
	}
	var out []StoredDelivery
	s.submit(op{kind: opSolo, fn: func(conn *sqlite.Conn) error {
		var err error
		out, err = s.readDeliveries(conn, clientID, fromID, limit)
		return err
	}, done: func(err error) {
		if err != nil {
			out = nil
		}
		done(out, err)
	}})
}

// StoredDelivery is one delivery read back by ReadDeliveries with its message.
type StoredDelivery struct {
	Delivery Delivery
	Message  *Message
}

func (s *Store) readDeliveries(conn *sqlite.Conn, clientID string, fromID uint64, limit int) ([]StoredDelivery, error) {
	out := make([]StoredDelivery, 0, min(limit, 1024))
	// The body is inline in the row, or (topic NULL) in messages.
	err := sqlitex.Execute(conn, `SELECT d.message_id, d.qos, d.packet_id, d.state, d.retain, d.sub_ids,
			coalesce(d.topic, m.topic), coalesce(d.payload, m.payload), coalesce(d.msg_qos, m.qos), coalesce(d.msg_retain, m.retain),
			iif(d.topic IS NULL, m.props, d.props), iif(d.topic IS NULL, m.expires, d.expires), iif(d.topic IS NULL, m.created, d.created)
		FROM deliveries d LEFT JOIN messages m ON d.topic IS NULL AND m.id = d.message_id
		WHERE d.client_id = ? AND d.message_id >= ? ORDER BY d.message_id LIMIT ?;`,
		&sqlitex.ExecOptions{Args: []any{clientID, int64(fromID), limit}, ResultFunc: func(q *sqlite.Stmt) error {
			id := uint64(q.ColumnInt64(0))
			d := Delivery{ClientID: clientID, MessageID: id, QoS: byte(q.ColumnInt(1)), PacketID: uint16(q.ColumnInt(2)),
				State: DeliveryState(q.ColumnInt(3)), Retain: q.ColumnBool(4)}
			ids, err := decodeSubIDs(columnBlob(q, 5))
			if err != nil {
				return err
			}
			d.SubIDs = ids
			if q.ColumnType(6) == sqlite.TypeNull {
				return fmt.Errorf("delivery of message %d references a missing body", id)
			}
			out = append(out, StoredDelivery{Delivery: d, Message: inlineMessage(q, id, 6)})
			return nil
		}})
	if err != nil {
		return nil, fmt.Errorf("persist: read deliveries of %q: %w", clientID, err)
	}
	ents, err := s.readSegmentEntries(conn, clientID, fromID, limit)
	if err != nil {
		return nil, fmt.Errorf("persist: read deliveries of %q: %w", clientID, err)
	}
	if len(ents) == 0 {
		return out, nil
	}
	// Rows and segment entries merged in id order, the first limit of them.
	rows := out
	merged := make([]StoredDelivery, 0, min(limit, len(rows)+len(ents)))
	for len(merged) < limit && (len(rows) > 0 || len(ents) > 0) {
		if len(ents) == 0 || (len(rows) > 0 && rows[0].Delivery.MessageID < ents[0].d.MessageID) {
			merged = append(merged, rows[0])
			rows = rows[1:]
			continue
		}
		merged = append(merged, StoredDelivery{Delivery: ents[0].d, Message: ents[0].m})
		ents = ents[1:]
	}
	return merged, nil
}
