package persist

import (
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
	defer func() {
		if err == nil {
			err = step(s.st.commit)
		}
		if err != nil {
			s.rollback()
		}
	}()

	expired, err := selectColumn(conn, "SELECT client_id FROM sessions WHERE expires_at > 0 AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2;", now, limit, func(q *sqlite.Stmt) string { return q.ColumnText(0) })
	if err != nil {
		return err
	}
	for _, id := range expired {
		if err := s.deleteSession(id); err != nil {
			return err
		}
	}
	r.Sessions = len(expired)

	// Messages too old, then messages past their expiry, each found through its index. The ids are
	// read first: deleting the deliveries lets the trigger take most bodies, and the explicit
	// delete catches a body that had none.
	type selection struct {
		query string
		bound int64
	}
	selections := []selection{{"SELECT id FROM messages WHERE expires > 0 AND expires <= ?1 ORDER BY expires LIMIT ?2;", now}}
	if cutoff != 0 {
		selections = append(selections, selection{"SELECT id FROM messages WHERE created < ?1 ORDER BY created LIMIT ?2;", cutoff})
	}
	for _, sel := range selections {
		ids, err := selectColumn(conn, sel.query, sel.bound, limit, func(q *sqlite.Stmt) int64 { return q.ColumnInt64(0) })
		if err != nil {
			return err
		}
		for _, id := range ids {
			for _, del := range [...]string{"DELETE FROM deliveries WHERE message_id = ?1;", "DELETE FROM messages WHERE id = ?1;"} {
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
		r.Messages += len(ids)
		r.More = r.More || len(ids) >= int(limit)
	}

	q, err := conn.Prepare("DELETE FROM retained WHERE topic IN (SELECT topic FROM retained WHERE expires > 0 AND expires <= ?1 ORDER BY expires LIMIT ?2);")
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

// selectColumn runs a cached query with two integer parameters and collects one value per row.
func selectColumn[T any](conn *sqlite.Conn, sql string, p1, p2 int64, get func(*sqlite.Stmt) T) ([]T, error) {
	q, err := conn.Prepare(sql)
	if err != nil {
		return nil, err
	}
	q.BindInt64(1, p1)
	q.BindInt64(2, p2)
	var out []T
	for {
		row, err := q.Step()
		if err != nil {
			q.Reset()
			return nil, err
		}
		if !row {
			return out, q.Reset()
		}
		out = append(out, get(q))
	}
}
