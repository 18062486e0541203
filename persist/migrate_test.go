package persist

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// writeV1Fixture fills dir with a database written by this build (schema version 1): a session
// with a will, a subscription, a queued delivery, an inbound QoS 2 id and a retained message. It
// returns what recovery reads back from it.
func writeV1Fixture(t *testing.T, dir string) state {
	t.Helper()
	s := open(t, testConfig(dir))
	m := &Message{ID: s.NextMessageID(), Topic: "plant/1/temp", Payload: []byte("21.5"), QoS: 1, Created: time.Now().UnixNano()}
	will := &Will{Message: Message{Topic: "plant/1/status", Payload: []byte("offline"), QoS: 1, Retain: true, Created: 2}, Delay: 5}
	must(t, func(d func(error)) {
		s.SaveSession(&Session{ClientID: "sensor", Expiry: NeverExpires, ExpiresAt: 1 << 62, Will: will}, d)
	})
	must(t, func(d func(error)) {
		s.SaveSubscription(Subscription{ClientID: "sensor", Filter: "plant/+/cmd", QoS: 2, ID: 7}, d)
	})
	must(t, func(d func(error)) {
		s.AddDeliveries(m, []Delivery{{ClientID: "sensor", QoS: 1, SubIDs: []uint32{7}}}, d)
	})
	must(t, func(d func(error)) { s.AddInbound("sensor", 42, d) })
	must(t, func(d func(error)) {
		s.SaveRetained(&Message{Topic: "plant/1/config", Payload: []byte("{}"), QoS: 1, Retain: true, Created: 3}, d)
	})
	want, _ := load(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(want.Sessions) != 1 || len(want.Deliveries) != 1 || len(want.Retained) != 1 || len(want.Inbound) != 1 {
		t.Fatalf("fixture incomplete: %+v", want)
	}
	return want
}

// nextSchema is what a build one schema version ahead would carry: a step that changes tables
// holding data, so a migration that loses or rewrites rows shows.
var nextSchema = `
ALTER TABLE sessions ADD COLUMN origin TEXT NOT NULL DEFAULT 'migrated';
CREATE INDEX retained_created ON retained(created);
`

func openRaw(t *testing.T, file string) *sqlite.Conn {
	t.Helper()
	conn, err := sqlite.OpenConn(file, sqlite.OpenReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func queryStrings(t *testing.T, conn *sqlite.Conn, sql string) []string {
	t.Helper()
	var out []string
	err := sqlitex.ExecuteTransient(conn, sql, &sqlitex.ExecOptions{
		ResultFunc: func(stmt *sqlite.Stmt) error { out = append(out, stmt.ColumnText(0)); return nil },
	})
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// A database written by the previous schema version is migrated by the next build and still holds
// every row; the copy kept beside it is the old version, which the old build opens and recovers.
func TestMigrateFromPreviousVersion(t *testing.T) {
	dir := t.TempDir()
	want := writeV1Fixture(t, dir)
	file := filepath.Join(dir, DatabaseFile)

	conn := openRaw(t, file)
	from, err := migrateWith(conn, file, append(migrations[:len(migrations):len(migrations)], nextSchema))
	if err != nil || from != SchemaVersion {
		t.Fatalf("migrate from schema %d: from %d, %v", SchemaVersion, from, err)
	}
	checks := map[string][]string{
		"PRAGMA user_version;":                                                              {strconv.Itoa(SchemaVersion + 1)},
		"SELECT client_id || ' ' || origin FROM sessions;":                                  {"sensor migrated"},
		"SELECT will_topic FROM sessions;":                                                  {"plant/1/status"},
		"SELECT filter FROM subscriptions;":                                                 {"plant/+/cmd"},
		"SELECT client_id || ' ' || qos || ' ' || topic || ' ' || payload FROM deliveries;": {"sensor 1 plant/1/temp 21.5"},
		"SELECT packet_id FROM inbound;":                                                    {"42"},
		"SELECT topic || ' ' || payload FROM retained;":                                     {"plant/1/config {}"},
		"SELECT name FROM sqlite_schema WHERE name LIKE '%_created';":                       {"retained_created"},
	}
	for sql, rows := range checks {
		if got := queryStrings(t, conn, sql); !reflect.DeepEqual(got, rows) {
			t.Errorf("after migration %s = %q, want %q", sql, got, rows)
		}
	}
	conn.Close()

	// The kept copy, renamed back into a data directory, is what this (the older) build reads.
	backup := backupFile(file, SchemaVersion)
	restored := t.TempDir()
	if err := os.Rename(backup, filepath.Join(restored, DatabaseFile)); err != nil {
		t.Fatalf("no copy kept at %s: %v", backup, err)
	}
	s := open(t, testConfig(restored))
	if got, _ := load(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("the kept copy recovers\n%+v\nwant\n%+v", got, want)
	}

	// The migrated database is now newer than this build, which refuses it and says so.
	if _, err := Open(testConfig(dir), nil); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("schema version %d but this build knows only up to %d", SchemaVersion+1, SchemaVersion)) {
		t.Errorf("Open of the migrated database by the older build: %v", err)
	}
}

// A step that fails rolls the whole migration back: the file stays as the old build wrote it,
// and that build still opens it.
func TestMigrateFailureChangesNothing(t *testing.T) {
	dir := t.TempDir()
	want := writeV1Fixture(t, dir)
	file := filepath.Join(dir, DatabaseFile)
	conn := openRaw(t, file)
	steps := append(migrations[:len(migrations):len(migrations)], nextSchema, "CREATE TABLE retained (topic TEXT);")
	from, err := migrateWith(conn, file, steps)
	if err == nil || from != SchemaVersion || !strings.Contains(err.Error(), fmt.Sprintf("migrate schema %d -> %d", SchemaVersion+1, SchemaVersion+2)) ||
		!strings.Contains(err.Error(), fmt.Sprintf("left at version %d", SchemaVersion)) {
		t.Fatalf("failing migration: from %d, %v", from, err)
	}
	if got := queryStrings(t, conn, "PRAGMA user_version;"); got[0] != strconv.Itoa(SchemaVersion) {
		t.Errorf("user_version %s after a failed migration", got[0])
	}
	if got := queryStrings(t, conn, "SELECT count(*) FROM pragma_table_info('sessions') WHERE name = 'origin';"); got[0] != "0" {
		t.Error("the first step of a failed migration stayed applied")
	}
	conn.Close()
	s := open(t, testConfig(dir))
	if got, _ := load(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("after a failed migration\n%+v\nwant\n%+v", got, want)
	}
	s.Close()

	// The copy from the failed attempt is never overwritten: the next attempt stops and names it.
	conn = openRaw(t, file)
	if _, err := migrateWith(conn, file, steps[:SchemaVersion+1]); err == nil || !strings.Contains(err.Error(), backupFile(file, SchemaVersion)+" already exists") {
		t.Errorf("migration with a copy already kept: %v", err)
	}
	if got := queryStrings(t, conn, "PRAGMA user_version;"); got[0] != strconv.Itoa(SchemaVersion) {
		t.Errorf("user_version %s after a refused migration", got[0])
	}
}

// Schema version 0 is a file no build wrote (created empty, by sqlite3 say): Open creates the
// schema in it, keeps no copy, and the store works.
func TestMigrateFromVersionZero(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, DatabaseFile)
	conn, err := sqlite.OpenConn(file, sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		t.Fatal(err)
	}
	if got := queryStrings(t, conn, "PRAGMA user_version;"); got[0] != "0" {
		t.Fatalf("fixture at version %s", got[0])
	}
	conn.Close()
	s := open(t, testConfig(dir))
	must(t, func(d func(error)) { s.SaveRetained(&Message{Topic: "a", Payload: []byte("b"), Retain: true}, d) })
	s = reopen(t, s)
	if got, _ := load(t, s); len(got.Retained) != 1 {
		t.Errorf("store on a version-0 file recovered %+v", got)
	}
	if _, err := os.Stat(backupFile(file, 0)); !os.IsNotExist(err) {
		t.Errorf("a copy of an empty version-0 file was kept: %v", err)
	}
}
