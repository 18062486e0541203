package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifySocket is a datagram socket standing in for the service manager's NOTIFY_SOCKET.
type notifySocket struct {
	conn *net.UnixConn
	name string // the value for NOTIFY_SOCKET
}

func listenNotify(t *testing.T, abstract bool) *notifySocket {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify.sock")
	if abstract {
		name = fmt.Sprintf("@promptmqd-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &notifySocket{conn: conn, name: name}
}

// next returns the next datagram. The deadline only bounds a broken test; nothing waits on time.
func (s *notifySocket) next(t *testing.T) string {
	t.Helper()
	if err := s.conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := s.conn.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

// nextNot returns the next datagram that is not a watchdog ping.
func (s *notifySocket) nextNot(t *testing.T, skip string) string {
	t.Helper()
	for {
		if msg := s.next(t); msg != skip {
			return msg
		}
	}
}

func TestNotifierEnvironment(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	cases := []struct {
		name     string
		env      map[string]string
		active   bool
		watchdog time.Duration
	}{
		{"no manager", map[string]string{}, false, 0},
		{"watchdog without socket", map[string]string{"WATCHDOG_USEC": "1000000"}, false, 0},
		{"notify only", map[string]string{"NOTIFY_SOCKET": "/run/x"}, true, 0},
		{"watchdog", map[string]string{"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000"}, true, 15 * time.Second},
		{"watchdog for us", map[string]string{"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": self}, true, time.Second},
		{"watchdog for another pid", map[string]string{"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, true, 0},
		{"bad watchdog", map[string]string{"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "soon"}, true, 0},
	}
	for _, tc := range cases {
		n := newNotifier(func(k string) string { return tc.env[k] }, slog.New(slog.DiscardHandler))
		if (n.addr != nil) != tc.active || n.watchdog != tc.watchdog {
			t.Errorf("%s: active %v watchdog %v, want %v %v", tc.name, n.addr != nil, n.watchdog, tc.active, tc.watchdog)
		}
	}
}

// In-process: READY=1 with the addresses, watchdog pings, STOPPING=1 when the context ends, for a
// socket path and an abstract socket alike; without NOTIFY_SOCKET nothing is sent and nothing fails.
func TestNotifierAnnounce(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		sock := listenNotify(t, abstract)
		env := map[string]string{"NOTIFY_SOCKET": sock.name, "WATCHDOG_USEC": "2000"}
		n := newNotifier(func(k string) string { return env[k] }, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(context.Background())
		addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1883}
		stopped := n.announce(ctx, []net.Addr{addr})
		if got := sock.next(t); got != "READY=1\nSTATUS=listening on 127.0.0.1:1883" {
			t.Fatalf("abstract=%v: first notification %q", abstract, got)
		}
		if got := sock.next(t); got != "WATCHDOG=1" {
			t.Fatalf("abstract=%v: after READY %q, want a watchdog ping", abstract, got)
		}
		cancel()
		stopped()
		if got := sock.nextNot(t, "WATCHDOG=1"); got != "STOPPING=1\nSTATUS=shutting down" {
			t.Fatalf("abstract=%v: at shutdown %q", abstract, got)
		}
	}
	n := newNotifier(func(string) string { return "" }, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	stopped := n.announce(ctx, nil)
	cancel()
	stopped()
}

// A send to a socket nobody listens on is reported, and announce carries on regardless.
func TestNotifierSocketGone(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gone.sock")
	var logged strings.Builder
	n := newNotifier(func(k string) string {
		if k == "NOTIFY_SOCKET" {
			return missing
		}
		return ""
	}, slog.New(slog.NewTextHandler(&logged, nil)))
	if err := n.send("READY=1"); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("send to a missing socket: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := n.announce(ctx, nil)
	cancel()
	stopped()
	if !strings.Contains(logged.String(), "notification failed") {
		t.Errorf("failure not logged: %s", logged.String())
	}
}

// The acceptance test: promptmqd started the way systemd starts a Type=notify service says READY=1
// only once its listener completes an MQTT handshake, feeds the watchdog, and says STOPPING=1 on
// SIGTERM before exiting 0.
func TestSystemdNotifySubprocess(t *testing.T) {
	sock := listenNotify(t, false)
	cmd := exec.Command(binary, "--bind", "127.0.0.1:0", "--metrics-enabled=false", "--sys-interval", "0s",
		"--data-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock.name, "WATCHDOG_USEC=20000")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	logged := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(bufio.NewReader(stderr))
		logged <- string(b)
	}()

	ready := sock.next(t)
	addr, ok := strings.CutPrefix(ready, "READY=1\nSTATUS=listening on ")
	if !ok {
		t.Fatalf("first notification %q, want READY=1 with the listening address", ready)
	}
	connack := mqttConnect(t, addr)
	if connack != "\x20\x02\x00\x00" {
		t.Fatalf("CONNACK right after READY=1: % x", connack)
	}
	if got := sock.next(t); got != "WATCHDOG=1" {
		t.Fatalf("after READY=1: %q, want a watchdog ping", got)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := sock.nextNot(t, "WATCHDOG=1"); got != "STOPPING=1\nSTATUS=shutting down" {
		t.Fatalf("after SIGTERM: %q, want STOPPING=1", got)
	}
	err = cmd.Wait()
	log := <-logged
	if err != nil {
		t.Fatalf("promptmqd exited with %v\n%s", err, log)
	}
	if strings.Contains(log, "notification failed") {
		t.Errorf("a notification failed:\n%s", log)
	}
}

// mqttConnect sends an MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s, client id "n") and returns
// the CONNACK's four bytes.
func mqttConnect(t *testing.T, addr string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s after READY=1: %v", addr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	connect := []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 1, 'n'}
	if _, err := conn.Write(connect); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 4)
	if _, err := io.ReadFull(conn, reply); err != nil {
		t.Fatalf("CONNACK: %v", err)
	}
	return string(reply)
}
