package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/x0a1b/promptmq/packets"
	"github.com/x0a1b/promptmq/persist"
)

// The storage faults of issue 7, seen as an operator sees them: through the promptmqd process.

// A corrupt database stops start-up with a non-zero status and a message naming the file and
// what to do; the file is left as it was.
func TestCorruptDatabaseStopsPromptmqd(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, persist.DatabaseFile)
	garbage := bytes.Repeat([]byte("this is not an SQLite database\n"), 512)
	if err := os.WriteFile(file, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	p := launchBroker(t, "127.0.0.1:0", durableArgs(dir)...)
	status, ok := p.wait(startTimeout)
	if !ok {
		t.Fatalf("promptmqd still runs on a corrupt database; log:\n%s", p.log())
	}
	log := p.log()
	if status == 0 || !strings.Contains(log, file) || !strings.Contains(log, "move it aside") {
		t.Errorf("exit status %d; want non-zero and a message naming %s and what to do; log:\n%s", status, file, log)
	}
	if strings.Contains(log, `"msg":"listening"`) {
		t.Errorf("listened before the store opened:\n%s", log)
	}
	t.Logf("exit status %d: %s", status, lastLine(log))
	if after, err := os.ReadFile(file); err != nil || !bytes.Equal(after, garbage) {
		t.Errorf("the corrupt file was changed (err %v)", err)
	}
}

// A second promptmqd on the same data directory is refused with a clear message; the first keeps
// serving.
func TestSecondPromptmqdOnSameDataDirRefused(t *testing.T) {
	dir := t.TempDir()
	first := startBroker(t, "127.0.0.1:0", durableArgs(dir)...)
	second := launchBroker(t, "127.0.0.1:0", durableArgs(dir)...)
	status, ok := second.wait(startTimeout)
	if !ok {
		t.Fatalf("second promptmqd still runs; log:\n%s", second.log())
	}
	log := second.log()
	lock := filepath.Join(dir, persist.LockFile)
	if status == 0 || !strings.Contains(log, lock) || !strings.Contains(log, "another promptmqd is using this data directory") {
		t.Errorf("second promptmqd: exit status %d, log:\n%s", status, log)
	}
	t.Logf("second promptmqd: exit status %d: %s", status, lastLine(log))
	c, err := dialMQTT(first.addr, "still-there", true, 0)
	if err != nil {
		t.Fatalf("first promptmqd stopped serving: %v", err)
	}
	c.disconnect()
	if err := first.stop(); err != nil {
		t.Error(err)
	}
}

// When the disk is full a QoS 1 publish with a durable recipient is refused (5.0: 0x80), never
// acknowledged as a success; the broker keeps serving, and the next publish succeeds once space
// is back. The disk is a small tmpfs, so the test needs root (it is skipped otherwise).
func TestDiskFullRefusesPublishThenRecovers(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	dataDir := filepath.Join(dir, "data")
	broker := startBroker(t, "127.0.0.1:0", durableArgs(dataDir)...)

	sub, err := dialMQTT(broker.addr, "disk-full-subscriber", true, 3600)
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.subscribe("disk/full", 1); err != nil {
		t.Fatal(err)
	}
	sub.disconnect()
	pub, err := dialMQTT(broker.addr, "disk-full-publisher", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.disconnect()
	publish := func(size int) packets.ReasonCode {
		t.Helper()
		var reason packets.ReasonCode
		if err := pub.publishPipelined(1, 1, false, fixedTopic("disk/full"), seqPayload(size), func(a ackResult) { reason = a.reason }); err != nil {
			t.Fatalf("publish: %v", err)
		}
		return reason
	}
	if r := publish(64); r != packets.Success {
		t.Fatalf("publish before the disk is full: %v", r)
	}

	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)
	// A message larger than any free space left in the WAL needs new pages on the full disk.
	refused := 0
	for range 3 {
		if r := publish(512 << 10); r == packets.UnspecifiedError {
			refused++
		} else if r != packets.Success {
			t.Fatalf("publish on a full disk: reason %v, want 0x80", r)
		}
	}
	if refused == 0 {
		t.Fatal("no publish was refused on a full disk")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if r := publish(512 << 10); r != packets.Success {
		t.Fatalf("publish after space came back: %v", r)
	}
	c, err := dialMQTT(broker.addr, "another-client", true, 0)
	if err != nil {
		t.Fatalf("the broker stopped serving: %v", err)
	}
	c.disconnect()
	t.Logf("refused %d of 3 publishes on the full disk; the next one after freeing space succeeded", refused)
	if err := broker.stop(); err != nil {
		t.Error(err)
	}
}

// fillDisk writes to path until the filesystem is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}

func lastLine(s string) string { return s[strings.LastIndexByte(s, '\n')+1:] }

// A write the store refuses is never answered as a success, and what it promised is not
// done: a QoS 1 publish whose delivery row fails gets 0x80 and reaches no subscriber, not
// even an online one that needs no row; a SUBSCRIBE whose row fails gets 0x80, and so does
// an UNSUBSCRIBE whose row cannot be removed; a CONNECT
// whose session row fails gets 0x88 (Server unavailable) instead of a CONNACK that promises
// a session. The failures come from triggers added to the database while the broker is down,
// so they hit exactly the rows the test names.
func TestRefusedWritesAreNotForwarded(t *testing.T) {
	dir := t.TempDir()
	broker := startBroker(t, "127.0.0.1:0", durableArgs(dir)...)
	leaveDurableSubscriber(t, broker.addr, "offline-subscriber", "refused/#", "kept/#")
	if err := broker.stop(); err != nil {
		t.Fatal(err)
	}
	injectWriteFailures(t, filepath.Join(dir, persist.DatabaseFile),
		`CREATE TRIGGER fail_delivery BEFORE INSERT ON deliveries WHEN NEW.topic LIKE 'refused/%'
			BEGIN SELECT RAISE(ABORT, 'injected write failure'); END;`,
		`CREATE TRIGGER fail_subscription BEFORE INSERT ON subscriptions WHEN NEW.filter LIKE 'refused/%'
			BEGIN SELECT RAISE(ABORT, 'injected write failure'); END;`,
		`CREATE TRIGGER fail_session BEFORE INSERT ON sessions WHEN NEW.client_id LIKE 'refused-%'
			BEGIN SELECT RAISE(ABORT, 'injected write failure'); END;`,
		`CREATE TRIGGER fail_unsubscribe BEFORE DELETE ON subscriptions WHEN OLD.filter LIKE 'sticky/%'
			BEGIN SELECT RAISE(ABORT, 'injected write failure'); END;`)
	broker = startBroker(t, "127.0.0.1:0", durableArgs(dir)...)

	online, err := dialMQTT(broker.addr, "online-subscriber", true, 0) // no row of its own
	if err != nil {
		t.Fatal(err)
	}
	defer online.disconnect()
	for _, filter := range []string{"refused/#", "kept/#"} {
		if err := online.subscribe(filter, 1); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := dialMQTT(broker.addr, "publisher", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.disconnect()
	if r := pub.publishOne(t, "refused/1"); r != packets.UnspecifiedError {
		t.Fatalf("publish whose delivery row failed: reason %v, want 0x80", r)
	}
	if r := pub.publishOne(t, "kept/1"); r != packets.Success {
		t.Fatalf("publish after the failure: reason %v", r)
	}
	// Messages of one publisher arrive in order, so the first PUBLISH the online subscriber
	// sees tells whether the refused one was forwarded.
	for {
		typ, err := online.read()
		if err != nil {
			t.Fatal(err)
		}
		if typ != packets.TypePublish {
			continue
		}
		if got := string(online.pkt.Publish.Topic); got != "kept/1" {
			t.Fatalf("online subscriber got %q first: a refused publish was forwarded", got)
		}
		break
	}

	durable, err := dialMQTT(broker.addr, "durable-subscriber", true, 3600)
	if err != nil {
		t.Fatal(err)
	}
	defer durable.disconnect()
	if err := durable.subscribe("refused/x", 1); err == nil || !strings.Contains(err.Error(), "SUBACK") {
		t.Fatalf("SUBSCRIBE whose row failed: %v, want a SUBACK with 0x80", err)
	} else if reasons := durable.pkt.Suback.Reasons; len(reasons) != 1 || reasons[0] != packets.UnspecifiedError {
		t.Fatalf("SUBACK %v, want [0x80]", reasons)
	}
	if err := durable.subscribe("kept/x", 1); err != nil {
		t.Fatalf("SUBSCRIBE after the failure: %v", err)
	}
	if err := durable.subscribe("sticky/x", 1); err != nil {
		t.Fatal(err)
	}
	if reasons := durable.unsubscribe(t, "sticky/x", "kept/x"); len(reasons) != 2 || reasons[0] != packets.UnspecifiedError || reasons[1] != packets.Success {
		t.Fatalf("UNSUBACK %v, want [0x80 0x00]: the row of sticky/x could not be removed", reasons)
	}

	if c, err := dialMQTT(broker.addr, "refused-session", true, 3600); err == nil {
		c.disconnect()
		t.Fatal("CONNECT whose session row failed was accepted")
	} else if !strings.Contains(err.Error(), packets.ServerUnavailable.String()) {
		t.Fatalf("CONNECT whose session row failed: %v, want CONNACK %v", err, packets.ServerUnavailable)
	}
	if c, err := dialMQTT(broker.addr, "refused-but-clean", true, 0); err != nil {
		t.Fatalf("a session the store does not keep needs no row: %v", err)
	} else {
		c.disconnect()
	}
	if err := broker.stop(); err != nil {
		t.Error(err)
	}
}

// unsubscribe sends UNSUBSCRIBE for filters and returns the UNSUBACK's reason codes.
func (c *mqttConn) unsubscribe(t *testing.T, filters ...string) []packets.ReasonCode {
	t.Helper()
	u := packets.Unsubscribe{Version: packets.V5, PacketID: 2}
	for _, f := range filters {
		u.Filters = append(u.Filters, []byte(f))
	}
	if _, err := c.conn.Write(u.Append(nil)); err != nil {
		t.Fatal(err)
	}
	for {
		typ, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		if typ == packets.TypeUnsuback {
			return c.pkt.Unsuback.Reasons
		}
	}
}

// injectWriteFailures runs the statements (triggers that fail chosen writes) on the database
// file of a stopped broker.
func injectWriteFailures(t *testing.T, file string, statements ...string) {
	t.Helper()
	conn, err := sqlite.OpenConn(file, sqlite.OpenReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range statements {
		if err := sqlitex.ExecuteTransient(conn, q, nil); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}
