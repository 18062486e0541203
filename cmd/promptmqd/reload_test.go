package main

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/engine/access"
	"github.com/x0a1b/promptmq/packets"
)

// logProc is a promptmqd subprocess whose JSON log lines a test waits on.
type logProc struct {
	t     *testing.T
	cmd   *exec.Cmd
	lines chan map[string]any
}

func startLogged(t *testing.T, args ...string) *logProc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &logProc{t: t, cmd: cmd, lines: make(chan map[string]any, 1024)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				p.lines <- line
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		for range p.lines {
		}
		cmd.Wait()
	})
	return p
}

// waitLog returns the next line whose msg is msg.
func (p *logProc) waitLog(msg string) map[string]any {
	p.t.Helper()
	guard := time.After(30 * time.Second) // against a hung broker, not a wait for the event
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("promptmqd exited before logging %q", msg)
			}
			if line["msg"] == msg {
				return line
			}
		case <-guard:
			p.t.Fatalf("no %q log line within 30s", msg)
		}
	}
}

// hupConn is the least MQTT 5.0 client a subprocess test needs.
type hupConn struct {
	t    *testing.T
	conn net.Conn
	r    *packets.Reader
	pkt  packets.Packet
}

func dialHup(t *testing.T, addr, id string) *hupConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &hupConn{t: t, conn: conn, r: packets.NewReader(conn, 4096)}
	c.send((&packets.Connect{Version: packets.V5, CleanStart: true, ClientID: []byte(id)}).Append(nil))
	if c.read() != packets.TypeConnack || c.pkt.Connack.Reason != packets.Success {
		t.Fatalf("CONNACK %v", c.pkt.Connack.Reason)
	}
	return c
}

func (c *hupConn) send(b []byte) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *hupConn) read() packets.Type {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	fh, body, err := c.r.ReadPacket()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.pkt.Decode(packets.V5, fh, body); err != nil {
		c.t.Fatal(err)
	}
	return fh.Type
}

// publish sends a QoS 1 PUBLISH and returns the PUBACK's reason code.
func (c *hupConn) publish(topic string, id uint16) packets.ReasonCode {
	c.t.Helper()
	c.send((&packets.Publish{Version: packets.V5, QoS: 1, PacketID: id, Topic: []byte(topic), Payload: []byte("x")}).Append(nil))
	if typ := c.read(); typ != packets.TypePuback {
		c.t.Fatalf("got %v, want PUBACK", typ)
	}
	return c.pkt.Ack.Reason
}

// TestSIGHUPReloadsACLAndLogLevel: a changed ACL file and log level apply after SIGHUP to a
// client that stays connected; a broken file is refused and the old rules stay.
func TestSIGHUPReloadsACLAndLogLevel(t *testing.T) {
	dir := t.TempDir()
	acl, config := filepath.Join(dir, "acl"), filepath.Join(dir, "promptmq.toml")
	write := func(path, text string) {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	settings := func(level string) string {
		return "[log]\nlevel = \"" + level + "\"\nformat = \"json\"\n[server]\nbind = \"127.0.0.1:0\"\n" +
			"[mqtt]\nsys-interval = \"0s\"\n[storage]\ndata-dir = \"\"\n[metrics]\nenabled = false\n" +
			"[auth]\nacl-file = \"" + acl + "\"\n"
	}
	write(acl, "topic readwrite a/#\n")
	write(config, settings("info"))
	p := startLogged(t, "-c", config)
	addr, _ := p.waitLog("listening")["addr"].(string)
	c := dialHup(t, addr, "stays")
	if r := c.publish("b/x", 1); r != packets.NotAuthorized {
		t.Fatalf("before SIGHUP b/x: %v, want 0x87", r)
	}

	write(acl, "topic readwrite b/#\n")
	write(config, settings("debug"))
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog("reload complete")
	if r := c.publish("b/x", 2); r != packets.Success {
		t.Errorf("after SIGHUP b/x: %v, want success", r)
	}
	if r := c.publish("a/x", 3); r != packets.NotAuthorized {
		t.Errorf("after SIGHUP a/x: %v, want 0x87", r)
	}
	dialHup(t, addr, "second")
	if line := p.waitLog("client connected"); line["client"] != "second" && line["client"] != "stays" {
		t.Errorf("debug line %v", line)
	}

	write(acl, "this is not an ACL\n")
	p.cmd.Process.Signal(syscall.SIGHUP)
	if line := p.waitLog("reload failed; keeping the old settings"); !strings.Contains(line["err"].(string), "line 1") {
		t.Errorf("failure not explained: %v", line)
	}
	if r := c.publish("b/y", 4); r != packets.Success {
		t.Errorf("after a failed reload b/y: %v, want the old rules", r)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitLog("promptmqd stopped")
}

func TestPasswdCommand(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pw")
	passwd := func(stdin string, args ...string) (string, int) {
		cmd := exec.Command(binary, append([]string{"passwd"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	if out, code := passwd("s3cret\n", "-c", file, "alice"); code != 0 {
		t.Fatalf("passwd -c: %d %s", code, out)
	}
	if out, code := passwd("hunter2", file, "bob"); code != 0 { // no newline: the last line still counts
		t.Fatalf("passwd: %d %s", code, out)
	}
	if out, code := passwd("changed\n", file, "alice"); code != 0 {
		t.Fatalf("passwd update: %d %s", code, out)
	}
	p, err := access.LoadPasswords(file)
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != 2 || !p.Check("alice", []byte("changed")) || !p.Check("bob", []byte("hunter2")) {
		t.Errorf("file after passwd: %d users", p.Len())
	}
	for _, tc := range []struct {
		stdin string
		args  []string
	}{
		{"x\n", []string{file}},                                          // no user
		{"\n", []string{file, "carol"}},                                  // empty password
		{"x\n", []string{filepath.Join(t.TempDir(), "missing"), "dave"}}, // no -c, no file
	} {
		if out, code := passwd(tc.stdin, tc.args...); code != exitUsage {
			t.Errorf("passwd %v: exit %d, want %d: %s", tc.args, code, exitUsage, out)
		}
	}
	// Mosquitto reads what we wrote.
	if tool, err := exec.LookPath("mosquitto_passwd"); err == nil {
		if out, err := exec.Command(tool, "-b", file, "erin", "pw").CombinedOutput(); err != nil {
			t.Errorf("mosquitto_passwd on our file: %v %s", err, out)
		}
	}
}
