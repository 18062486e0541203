package persist

import (
	"fmt"
	"os"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// migrations[i] brings the schema from version i to i+1 (PRAGMA user_version). They only ever
// append: a released migration is never edited, so every database reaches the same schema.
//
// Times are unix nanoseconds; 0 means "never" (expires) or "not running" (sessions.expires_at).
// A message body is stored once: inline in its delivery row when it has one durable recipient,
// else in messages, referenced by its deliveries; the trigger deletes a shared body when its last
// delivery goes, whoever deletes it (an ack, a session's end, cleanup).
var migrations = []string{
	`
CREATE TABLE retained (
	topic   TEXT PRIMARY KEY,
	payload BLOB NOT NULL,
	qos     INTEGER NOT NULL,
	props   BLOB,
	expires INTEGER NOT NULL,
	created INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX retained_expires ON retained(expires) WHERE expires > 0;

CREATE TABLE sessions (
	client_id    TEXT PRIMARY KEY,
	expiry       INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL,
	will_topic   TEXT,
	will_payload BLOB,
	will_qos     INTEGER,
	will_retain  INTEGER,
	will_props   BLOB,
	will_expires INTEGER,
	will_created INTEGER,
	will_delay   INTEGER
) WITHOUT ROWID;
CREATE INDEX sessions_expires_at ON sessions(expires_at) WHERE expires_at > 0;

CREATE TABLE subscriptions (
	client_id       TEXT NOT NULL REFERENCES sessions(client_id) ON DELETE CASCADE,
	filter          TEXT NOT NULL,
	qos             INTEGER NOT NULL,
	no_local        INTEGER NOT NULL,
	rap             INTEGER NOT NULL,
	retain_handling INTEGER NOT NULL,
	sub_id          INTEGER NOT NULL,
	PRIMARY KEY (client_id, filter)
) WITHOUT ROWID;

CREATE TABLE messages (
	id      INTEGER PRIMARY KEY,
	topic   TEXT NOT NULL,
	payload BLOB NOT NULL,
	qos     INTEGER NOT NULL,
	retain  INTEGER NOT NULL,
	props   BLOB,
	expires INTEGER NOT NULL,
	created INTEGER NOT NULL
);
CREATE INDEX messages_created ON messages(created);
CREATE INDEX messages_expires ON messages(expires) WHERE expires > 0;

CREATE TABLE deliveries (
	client_id  TEXT NOT NULL REFERENCES sessions(client_id) ON DELETE CASCADE,
	message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
	qos        INTEGER NOT NULL,
	packet_id  INTEGER NOT NULL,
	state      INTEGER NOT NULL,
	retain     INTEGER NOT NULL,
	sub_ids    BLOB,
	PRIMARY KEY (client_id, message_id)
) WITHOUT ROWID;
CREATE INDEX deliveries_message ON deliveries(message_id);

CREATE TRIGGER deliveries_release AFTER DELETE ON deliveries BEGIN
	DELETE FROM messages WHERE id = OLD.message_id
		AND NOT EXISTS (SELECT 1 FROM deliveries WHERE message_id = OLD.message_id);
END;

CREATE TABLE inbound (
	client_id TEXT NOT NULL REFERENCES sessions(client_id) ON DELETE CASCADE,
	packet_id INTEGER NOT NULL,
	PRIMARY KEY (client_id, packet_id)
) WITHOUT ROWID;
`,
	// Version 2: a durable QoS 1/2 message costs one b-tree insert instead of four (issue 7's
	// throughput target; the v1 profile had the writer CPU-bound with 19% in index page splits).
	// A message with one durable recipient, the common case, keeps its body inline in its delivery
	// row (topic NOT NULL); only a message with several shares one row in messages (topic NULL
	// in each of its deliveries). So deliveries no longer reference messages by foreign key, and
	// the index by message id covers only shared rows. messages_created goes: ids grow with time,
	// so age cleanup walks messages and each session's deliveries in id order instead. v1 rows all
	// become shared deliveries: their bodies stay where they are.
	`
DROP TRIGGER deliveries_release;
DROP INDEX deliveries_message;
DROP INDEX messages_created;

CREATE TABLE deliveries_v2 (
	-- Deferred: checked at COMMIT, so a multi-row INSERT cannot abort halfway and SQLite keeps
	-- no statement journal for it (a copy of every page it touches, 12% of the writer's CPU).
	-- A violation fails the batch's COMMIT; the writer then retries each op alone, as before.
	client_id  TEXT NOT NULL REFERENCES sessions(client_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
	message_id INTEGER NOT NULL,
	qos        INTEGER NOT NULL,
	packet_id  INTEGER NOT NULL,
	state      INTEGER NOT NULL,
	retain     INTEGER NOT NULL,
	sub_ids    BLOB,
	-- The inline body; all NULL (expires, created 0) when the body is in messages.
	topic      TEXT,
	payload    BLOB,
	msg_qos    INTEGER,
	msg_retain INTEGER,
	props      BLOB,
	expires    INTEGER NOT NULL DEFAULT 0,
	created    INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (client_id, message_id)
) WITHOUT ROWID;
INSERT INTO deliveries_v2 (client_id, message_id, qos, packet_id, state, retain, sub_ids)
	SELECT client_id, message_id, qos, packet_id, state, retain, sub_ids FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v2 RENAME TO deliveries;
CREATE INDEX deliveries_shared ON deliveries(message_id) WHERE topic IS NULL;
CREATE INDEX deliveries_expires ON deliveries(expires) WHERE expires > 0;

CREATE TRIGGER deliveries_release AFTER DELETE ON deliveries WHEN OLD.topic IS NULL BEGIN
	DELETE FROM messages WHERE id = OLD.message_id
		AND NOT EXISTS (SELECT 1 FROM deliveries WHERE message_id = OLD.message_id AND topic IS NULL);
END;
`,
	// Version 3: segments (segments.go). The deliveries of one client accepted in one commit,
	// when there are enough of them, are one row: a body of entries (delivery and message) in id
	// order. Acknowledgements and state changes of their entries are rows of segment_marks; a
	// segment goes with its marks once every entry is done. created is the oldest entry's,
	// expires the soonest nonzero expiry of its entries, for cleanup. Existing rows stay rows.
	`
-- A rowid table, the key in an index beside it: a WITHOUT ROWID b-tree compares keys by
-- reading whole records, so each seek among segments read their overflowing bodies (60% of
-- a segment insert in the profile).
CREATE TABLE segments (
	id        INTEGER PRIMARY KEY,
	client_id TEXT NOT NULL REFERENCES sessions(client_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
	first_id  INTEGER NOT NULL,
	last_id   INTEGER NOT NULL,
	count     INTEGER NOT NULL,
	created   INTEGER NOT NULL,
	expires   INTEGER NOT NULL,
	body      BLOB NOT NULL
);
CREATE UNIQUE INDEX segments_key ON segments(client_id, first_id);

CREATE TABLE segment_marks (
	client_id  TEXT NOT NULL,
	message_id INTEGER NOT NULL,
	packet_id  INTEGER NOT NULL,
	state      INTEGER NOT NULL,
	done       INTEGER NOT NULL,
	PRIMARY KEY (client_id, message_id)
) WITHOUT ROWID;
`,
	// Version 4: a segment entry may leave out its topic or created when equal to the previous
	// entry's (flags 4 and 8, segmentEncoder): the entries of one commit mostly share both. The
	// tables are unchanged and version 3 bodies read as they are; the version changes so that
	// a version 3 build, which would misread the new entries, refuses the file.
	`
SELECT 1;
`,
}

// SchemaVersion is the schema version this build writes.
const SchemaVersion = 4

// migrate brings conn to SchemaVersion, refusing a database written by a newer build rather than
// guessing at its meaning. An older database is first copied to backupFile(file, from), then every
// step runs in one transaction: the migrated file is whole or untouched, and the copy is what the
// old build can still open if the new one must be rolled back.
func migrate(conn *sqlite.Conn, file string) (from int, err error) {
	return migrateWith(conn, file, migrations)
}

// migrateWith is migrate with the list of steps as a parameter, so a test can play a build one
// schema version ahead against a database the current build wrote.
func migrateWith(conn *sqlite.Conn, file string, steps []string) (from int, err error) {
	from, err = userVersion(conn)
	if err != nil {
		return 0, fmt.Errorf("persist: %s: read schema version: %w", file, err)
	}
	if from > len(steps) {
		return from, fmt.Errorf("persist: %s has schema version %d but this build knows only up to %d: run a newer promptmqd", file, from, len(steps))
	}
	if from == len(steps) {
		return from, nil
	}
	// Version 0 is a file no build has written to: there is nothing to keep.
	if from > 0 {
		backup := backupFile(file, from)
		if _, err := os.Lstat(backup); err == nil {
			return from, fmt.Errorf("persist: %s has schema version %d and must be migrated to %d, but %s already exists (a copy kept by an earlier migration); nothing was changed: move that copy aside and start again", file, from, len(steps), backup)
		}
		// VACUUM INTO writes a consistent snapshot of the database, WAL included, as one new file.
		if err := sqlitex.Execute(conn, "VACUUM INTO ?;", &sqlitex.ExecOptions{Args: []any{backup}}); err != nil {
			return from, fmt.Errorf("persist: %s: copy schema version %d to %s before migrating: %w; nothing was changed", file, from, backup, err)
		}
	}
	defer sqlitex.Save(conn)(&err)
	for v := from; v < len(steps); v++ {
		if err := sqlitex.ExecuteScript(conn, steps[v], nil); err != nil {
			return from, fmt.Errorf("persist: %s: migrate schema %d -> %d: %w; the database was left at version %d", file, v, v+1, err, from)
		}
	}
	if err := sqlitex.ExecuteTransient(conn, fmt.Sprintf("PRAGMA user_version = %d;", len(steps)), nil); err != nil {
		return from, fmt.Errorf("persist: %s: set schema version %d: %w", file, len(steps), err)
	}
	return from, nil
}

// backupFile names the copy of file kept before a migration from schema version: the old build
// opens it once renamed back to promptmq.db.
func backupFile(file string, version int) string {
	return fmt.Sprintf("%s.schema-v%d.bak", file, version)
}

func userVersion(conn *sqlite.Conn) (int, error) {
	v := 0
	err := sqlitex.ExecuteTransient(conn, "PRAGMA user_version;", &sqlitex.ExecOptions{
		ResultFunc: func(stmt *sqlite.Stmt) error { v = stmt.ColumnInt(0); return nil },
	})
	return v, err
}
