package persist

import (
	"slices"
	"time"

	"zombiezen.com/go/sqlite"
)

// CleanupResult counts what one cleanup pass deleted.
type CleanupResult struct {
	Sessions, Messages, Retained int
	// More is set when a kind hit the batch size, so another pass may find more.
	More bool
}

// cleanupLoop runs a cleanup every check-interval. Each pass is one short transaction of at most
// batch-size rows per kind, run by the writer between batches, so publishers wait at most one
// pass; passes repeat until a tick's work is done.
func (s *Store) cleanupLoop() {
	defer close(s.cleanupDone)
	ticker := time.NewTicker(s.cfg.Cleanup.CheckInterval)
	defer ticker.Stop()
	for {
		select {
		case <-s.cleanupStop:
			return
		case <-ticker.C:
		}
		var total CleanupResult
		for {
			r, err := s.Cleanup(time.Now())
			if err != nil {
				s.log.Warn("persist: cleanup failed; retrying at the next check-interval", "file", s.file, "err", err)
				break
			}
			total.Sessions += r.Sessions
			total.Messages += r.Messages
			total.Retained += r.Retained
			if !r.More {
				break
			}
			select {
			case <-s.cleanupStop:
				return
			default:
			}
		}
		if total.Sessions+total.Messages+total.Retained > 0 {
			s.log.Info("persist: cleanup", "expired_sessions", total.Sessions, "old_or_expired_messages", total.Messages, "expired_retained", total.Retained)
		}
	}
}

// Cleanup runs one pass at now: it deletes up to storage.cleanup.batch-size expired sessions (with
// their rows), messages older than max-message-age or past their expiry (with their deliveries),
// and expired retained messages. The cleanup loop calls it; tests and tools may too.
func (s *Store) Cleanup(now time.Time) (CleanupResult, error) {
	var r CleanupResult
	if !s.durable {
		return r, nil
	}
	err := s.solo(func(conn *sqlite.Conn) error { return s.cleanup(conn, now.UnixNano(), &r) })
	return r, err
}

func (s *Store) cleanup(conn *sqlite.Conn, now int64, r *CleanupResult) (err error) {
	limit := int64(max(s.cfg.Cleanup.BatchSize, 1))
	cutoff := int64(0)
	if age := s.cfg.Cleanup.MaxMessageAge; age > 0 {
		cutoff = now - int64(age)
	}
	if err := step(s.st.begin); err != nil {
		s.rollback()
		return err
	}
	s.segsChanged = false
	defer func() {
		if err == nil {
			err = step(s.st.commit)
		}
		if err != nil {
			s.rollback()
		}
	}()

	expired, err := selectColumn(conn, "SELECT client_id FROM sessions WHERE expires_at > 0 AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2;", func(q *sqlite.Stmt) string { return q.ColumnText(0) }, now, limit)
	if err != nil {
		return err
	}
	for _, id := range expired {
		if err := s.deleteSession(id); err != nil {
			return err
		}
	}
	r.Sessions = len(expired)

	// Shared bodies past their expiry or too old, each with its deliveries (found through the
	// partial index of shared rows), then inline bodies alike. Messages ids grow with time, so
	// the oldest are first in id order: the age scans stop at the first young row instead of
	// keeping an index by creation time that every insert would pay for. A clock stepped back
	// can leave an old row behind a younger one until that one ages too: kept longer, never
	// dropped early.
	shared, err := selectColumn(conn, "SELECT id FROM messages WHERE expires > 0 AND expires <= ?1 ORDER BY expires LIMIT ?2;", func(q *sqlite.Stmt) int64 { return q.ColumnInt64(0) }, now, limit)
	if err != nil {
		return err
	}
	if cutoff != 0 && int64(len(shared)) < limit {
		old, err := selectWhile(conn, "SELECT id, created FROM messages ORDER BY id;", "", cutoff, limit-int64(len(shared)))
		if err != nil {
			return err
		}
		for _, o := range old {
			if !slices.Contains(shared, o.id) { // expired and old alike: counted once
				shared = append(shared, o.id)
			}
		}
	}
	for _, id := range shared {
		for _, del := range [...]string{"DELETE FROM deliveries WHERE message_id = ?1 AND topic IS NULL;", "DELETE FROM messages WHERE id = ?1;"} {
			q, err := conn.Prepare(del)
			if err != nil {
				return err
			}
			q.BindInt64(1, id)
			if err := step(q); err != nil {
				return err
			}
		}
	}
	r.Messages = len(shared)

	type key struct {
		client string
		id     int64
	}
	var inline []key
	q, err := conn.Prepare("SELECT client_id, message_id FROM deliveries WHERE expires > 0 AND expires <= ?1 ORDER BY expires LIMIT ?2;")
	if err != nil {
		return err
	}
	q.BindInt64(1, now)
	q.BindInt64(2, limit-int64(r.Messages))
	if err := eachRow(q, func(q *sqlite.Stmt) { inline = append(inline, key{q.ColumnText(0), q.ColumnInt64(1)}) }); err != nil {
		return err
	}
	if cutoff != 0 {
		clients, err := selectColumn(conn, "SELECT client_id FROM sessions;", func(q *sqlite.Stmt) string { return q.ColumnText(0) })
		if err != nil {
			return err
		}
		for _, c := range clients {
			left := limit - int64(r.Messages+len(inline))
			if left <= 0 {
				break
			}
			old, err := selectWhile(conn, "SELECT message_id, created FROM deliveries WHERE client_id = ?1 AND topic IS NOT NULL ORDER BY message_id;", c, cutoff, left)
			if err != nil {
				return err
			}
			for _, o := range old {
				if k := (key{c, o.id}); !slices.Contains(inline, k) {
					inline = append(inline, k)
				}
			}
		}
	}
	for _, k := range inline {
		st := s.st.deleteDelivery
		st.BindText(1, k.client)
		st.BindInt64(2, k.id)
		if err := step(st); err != nil {
			return err
		}
	}
	r.Messages += len(inline)
	if left := int(limit) - r.Messages; left > 0 {
		n, err := s.expireSegments(conn, now, cutoff, left)
		if err != nil {
			return err
		}
		r.Messages += n
	}
	r.More = r.More || r.Messages >= int(limit)

	q, err = conn.Prepare("DELETE FROM retained WHERE topic IN (SELECT topic FROM retained WHERE expires > 0 AND expires <= ?1 ORDER BY expires LIMIT ?2);")
	if err != nil {
		return err
	}
	q.BindInt64(1, now)
	q.BindInt64(2, limit)
	if err := step(q); err != nil {
		return err
	}
	r.Retained = conn.Changes()
	r.More = r.More || r.Sessions >= int(limit) || r.Retained >= int(limit)
	return nil
}

// selectColumn runs a cached query with integer parameters and collects one value per row.
func selectColumn[T any](conn *sqlite.Conn, sql string, get func(*sqlite.Stmt) T, params ...int64) ([]T, error) {
	q, err := conn.Prepare(sql)
	if err != nil {
		return nil, err
	}
	for i, p := range params {
		q.BindInt64(i+1, p)
	}
	var out []T
	if err := eachRow(q, func(q *sqlite.Stmt) { out = append(out, get(q)) }); err != nil {
		return nil, err
	}
	return out, nil
}

// aged is a row found by selectWhile.
type aged struct{ id, created int64 }

// selectWhile steps a cached query returning (id, created) in id order, with client as ?1 when
// not empty, and collects rows while created is before cutoff, at most limit.
func selectWhile(conn *sqlite.Conn, sql, client string, cutoff, limit int64) ([]aged, error) {
	q, err := conn.Prepare(sql)
	if err != nil {
		return nil, err
	}
	if client != "" {
		q.BindText(1, client)
	}
	var out []aged
	for int64(len(out)) < limit {
		row, err := q.Step()
		if err != nil {
			q.Reset()
			return nil, err
		}
		if !row {
			break
		}
		a := aged{q.ColumnInt64(0), q.ColumnInt64(1)}
		if a.created >= cutoff {
			break
		}
		out = append(out, a)
	}
	return out, q.Reset()
}
