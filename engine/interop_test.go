package engine

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Interoperability with Debian's mosquitto_pub and mosquitto_sub (package
// mosquitto-clients), run as subprocesses against a test broker. `make interop` runs these
// alone; without the programs they skip, except under CI=true, where they fail.

// interopVersions are the protocol versions every scenario runs in.
var interopVersions = []string{"mqttv5", "mqttv311"}

// mosquittoClients returns the two programs or skips (fails under CI).
func mosquittoClients(t *testing.T) {
	t.Helper()
	for _, prog := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(prog); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found: install the Debian package mosquitto-clients (CI=true: this is an error)", prog)
			}
			t.Skipf("%s not found: install the Debian package mosquitto-clients to run the interop tests", prog)
		}
	}
}

// mosq is one mosquitto_sub running in the background.
type mosq struct {
	cmd  *exec.Cmd
	out  lockedBuffer
	done chan error
}

// hostPort splits the test broker's address into mosquitto's -h and -p arguments.
func hostPort(t *testing.T, addr string) []string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return []string{"-h", host, "-p", port}
}

// startSub starts mosquitto_sub; it always carries -W so it cannot outlive the test.
func startSub(t *testing.T, addr string, args ...string) *mosq {
	t.Helper()
	m := &mosq{done: make(chan error, 1)}
	full := append(hostPort(t, addr), append([]string{"-W", "15"}, args...)...)
	m.cmd = exec.Command("mosquitto_sub", full...)
	m.cmd.Stdout = &m.out
	m.cmd.Stderr = os.Stderr
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	t.Cleanup(func() {
		m.cmd.Process.Kill()
		<-m.done
	})
	return m
}

// output waits for mosquitto_sub to exit on its own (-C count reached) and returns what it
// printed.
func (m *mosq) output(t *testing.T) string {
	t.Helper()
	select {
	case err := <-m.done:
		m.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("mosquitto_sub %v: %v (printed %q)", m.cmd.Args, err, m.out.String())
		}
		return m.out.String()
	case <-time.After(15 * time.Second):
		t.Fatalf("mosquitto_sub %v did not finish; printed %q", m.cmd.Args, m.out.String())
		return ""
	}
}

// pub runs mosquitto_pub to completion.
func pub(t *testing.T, addr string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mosquitto_pub", append(hostPort(t, addr), args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub %v: %v\n%s", args, err, out)
	}
}

// subscribedBy waits until the session of id holds filter: mosquitto_sub prints nothing
// when its subscription is in place, so the broker is asked.
func subscribedBy(t *testing.T, b *Broker, id, filter string) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("%s subscribed to %s", id, filter), func() bool { return b.subscribed(id, filter) })
}

func TestInteropQoS(t *testing.T) {
	mosquittoClients(t)
	t.Parallel()
	b, addr := testBroker(t, nil)
	for _, v := range interopVersions {
		for q := 0; q <= 2; q++ {
			t.Run(fmt.Sprintf("%s qos %d", v, q), func(t *testing.T) {
				id := fmt.Sprintf("sub-%s-%d", v, q)
				topic := fmt.Sprintf("interop/%s/%d", v, q)
				s := startSub(t, addr, "-V", v, "-i", id, "-q", fmt.Sprint(q), "-t", topic, "-C", "1", "-F", "%t %q %p")
				subscribedBy(t, b, id, topic)
				pub(t, addr, "-V", v, "-q", fmt.Sprint(q), "-t", topic, "-m", "hello")
				if got, want := s.output(t), fmt.Sprintf("%s %d hello\n", topic, q); got != want {
					t.Fatalf("got %q, want %q", got, want)
				}
			})
		}
	}
}

func TestInteropRetained(t *testing.T) {
	mosquittoClients(t)
	t.Parallel()
	b, addr := testBroker(t, nil)
	for _, v := range interopVersions {
		t.Run(v, func(t *testing.T) {
			topic := "interop/retained/" + v
			pub(t, addr, "-V", v, "-q", "1", "-r", "-t", topic, "-m", "first")
			pub(t, addr, "-V", v, "-q", "1", "-r", "-t", topic, "-m", "kept")
			s := startSub(t, addr, "-V", v, "-t", topic, "-C", "1", "-F", "%r %p")
			if got := s.output(t); got != "1 kept\n" {
				t.Fatalf("got %q, want the retained message with its flag", got)
			}
			pub(t, addr, "-V", v, "-q", "1", "-r", "-n", "-t", topic) // an empty retained payload clears
			// --retained-only exits at the first message without RETAIN: the marker.
			id := "cleared-" + v
			s = startSub(t, addr, "-V", v, "-i", id, "-t", topic, "--retained-only", "-F", "%t %p")
			subscribedBy(t, b, id, topic)
			pub(t, addr, "-V", v, "-t", topic, "-m", "marker")
			if got := s.output(t); got != "" {
				t.Fatalf("after the clear got %q, want nothing", got)
			}
		})
	}
}

func TestInteropWillOnKill(t *testing.T) {
	mosquittoClients(t)
	t.Parallel()
	b, addr := testBroker(t, nil)
	for _, v := range interopVersions {
		t.Run(v, func(t *testing.T) {
			willTopic := "interop/will/" + v
			watch := startSub(t, addr, "-V", v, "-i", "watch-"+v, "-q", "1", "-t", willTopic, "-C", "1", "-F", "%t %p")
			subscribedBy(t, b, "watch-"+v, willTopic)
			dying := startSub(t, addr, "-V", v, "-i", "dying-"+v, "-t", "interop/nothing", "--will-topic", willTopic, "--will-payload", "killed", "--will-qos", "1")
			subscribedBy(t, b, "dying-"+v, "interop/nothing")
			dying.cmd.Process.Signal(syscall.SIGKILL)
			if got := watch.output(t); got != willTopic+" killed\n" {
				t.Fatalf("got %q, want the will", got)
			}
		})
	}
}

func TestInteropPersistentSession(t *testing.T) {
	mosquittoClients(t)
	t.Parallel()
	b, addr := testBroker(t, nil)
	for _, v := range interopVersions {
		t.Run(v, func(t *testing.T) {
			id, topic := "durable-"+v, "interop/durable/"+v
			session := []string{"-V", v, "-i", id, "-c", "-q", "1", "-t", topic}
			if v == "mqttv5" {
				session = append(session, "-x", "60")
			}
			// -E: subscribe, then leave the session behind.
			startSub(t, addr, append(session, "-E")...).output(t)
			eventually(t, 10*time.Second, "the session went offline", func() bool { return !b.subscribed(id, topic) })
			pub(t, addr, "-V", v, "-q", "1", "-t", topic, "-m", "while away 1")
			pub(t, addr, "-V", v, "-q", "2", "-t", topic, "-m", "while away 2")
			s := startSub(t, addr, append(session, "-C", "2")...)
			if got := s.output(t); got != "while away 1\nwhile away 2\n" {
				t.Fatalf("got %q", got)
			}
		})
	}
}

func TestInteropSharedSubscription(t *testing.T) {
	mosquittoClients(t)
	t.Parallel()
	b, addr := testBroker(t, nil)
	for _, v := range interopVersions {
		t.Run(v, func(t *testing.T) {
			topic := "interop/shared/" + v
			filter := "$share/workers/" + topic
			const n = 10
			var members []*mosq
			for i := range 2 {
				id := fmt.Sprintf("worker%d-%s", i, v)
				members = append(members, startSub(t, addr, "-V", v, "-i", id, "-q", "1", "-t", filter, "-t", "interop/marker/"+v, "-F", "%t %p"))
				subscribedBy(t, b, id, filter)
			}
			lines := make([]string, n)
			for i := range lines {
				lines[i] = fmt.Sprint("job ", i)
			}
			// One mosquitto_pub for all jobs (-l: one message per line), then the marker.
			cmd := exec.Command("mosquitto_pub", append(hostPort(t, addr), "-V", v, "-q", "1", "-t", topic, "-l")...)
			cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_pub -l: %v\n%s", err, out)
			}
			pub(t, addr, "-V", v, "-q", "1", "-t", "interop/marker/"+v, "-m", "end")
			seen := map[string]int{}
			for _, m := range members {
				eventually(t, 10*time.Second, "marker reached every member", func() bool {
					return strings.Contains(m.outString(), "interop/marker/"+v+" end")
				})
				for _, line := range strings.Split(strings.TrimSpace(m.outString()), "\n") {
					if strings.HasPrefix(line, topic+" ") {
						seen[strings.TrimPrefix(line, topic+" ")]++
					}
				}
			}
			for _, l := range lines {
				if seen[l] != 1 {
					t.Fatalf("%q delivered %d times to the group, want once: %v", l, seen[l], seen)
				}
			}
		})
	}
}

// outString reads what a running mosquitto_sub printed so far.
func (m *mosq) outString() string { return m.out.String() }

// lockedBuffer is stdout of a program still running: exec's copier writes while the test
// reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestInteropUserProperties(t *testing.T) {
	mosquittoClients(t)
	t.Parallel()
	b, addr := testBroker(t, nil)
	s := startSub(t, addr, "-V", "mqttv5", "-i", "props", "-t", "interop/props", "-C", "1", "-F", "%P|%p")
	subscribedBy(t, b, "props", "interop/props")
	pub(t, addr, "-V", "mqttv5", "-t", "interop/props", "-m", "x",
		"-D", "publish", "user-property", "zeta", "1", "-D", "publish", "user-property", "alpha", "2", "-D", "publish", "user-property", "zeta", "3")
	if got := s.output(t); got != "zeta:1 alpha:2 zeta:3|x\n" {
		t.Fatalf("got %q, want the user properties unchanged and in order", got)
	}
}

func TestInteropPayloadSizes(t *testing.T) {
	mosquittoClients(t)
	t.Parallel()
	b, addr := testBroker(t, nil)
	big := bytes.Repeat([]byte("0123456789abcdef"), 256<<10/16) // 256 KiB
	file := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(file, big, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, v := range interopVersions {
		t.Run(v+" empty", func(t *testing.T) {
			id, topic := "empty-"+v, "interop/empty/"+v
			s := startSub(t, addr, "-V", v, "-i", id, "-q", "1", "-t", topic, "-C", "1", "-F", "%t %l")
			subscribedBy(t, b, id, topic)
			pub(t, addr, "-V", v, "-q", "1", "-t", topic, "-n")
			if got := s.output(t); got != topic+" 0\n" {
				t.Fatalf("got %q, want a 0-byte message", got)
			}
		})
		t.Run(v+" 256 KiB", func(t *testing.T) {
			id, topic := "big-"+v, "interop/big/"+v
			s := startSub(t, addr, "-V", v, "-i", id, "-q", "1", "-t", topic, "-C", "1", "-N")
			subscribedBy(t, b, id, topic)
			pub(t, addr, "-V", v, "-q", "1", "-t", topic, "-f", file)
			if got := s.output(t); got != string(big) {
				t.Fatalf("got %d bytes, want the %d sent", len(got), len(big))
			}
		})
	}
}
