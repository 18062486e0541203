package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// brokerProc is a promptmqd process started by a test, with its JSON log collected line by line
// so the test can wait for a given line (never for a duration) and read what it logged.
type brokerProc struct {
	t      testing.TB
	cmd    *exec.Cmd
	addr   string
	mu     sync.Mutex
	lines  []string
	notify chan struct{} // signalled on each new line and when stderr closes
	closed bool
	exited chan struct{}
	status int
}

// startTimeout guards the start-up of a broker; recovering a large store takes a while.
const startTimeout = 120 * time.Second

// durableArgs are the flags of a broker whose acknowledged messages survive SIGKILL:
// synchronous NORMAL with WAL (issue 7).
func durableArgs(dataDir string) []string {
	return []string{"--data-dir", dataDir, "--sqlite-synchronous", "NORMAL", "--sqlite-journal-mode", "WAL"}
}

// startBroker runs promptmqd on bind (127.0.0.1:0 for any free port) with the extra flags and
// waits until it listens. The process is killed when the test ends if it still runs.
func startBroker(t testing.TB, bind string, args ...string) *brokerProc {
	t.Helper()
	p := launchBroker(t, bind, args...)
	line, ok := p.waitLog(`"msg":"listening"`, startTimeout)
	if !ok {
		t.Fatalf("promptmqd did not start; log:\n%s", p.log())
	}
	var rec struct{ Addr string }
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Addr == "" {
		t.Fatalf("listening line without an address: %s", line)
	}
	p.addr = rec.Addr
	return p
}

// launchBroker starts promptmqd without waiting for anything.
func launchBroker(t testing.TB, bind string, args ...string) *brokerProc {
	t.Helper()
	return launchBrokerEnv(t, nil, bind, args...)
}

// launchBrokerEnv is launchBroker with env added to the test's environment.
func launchBrokerEnv(t testing.TB, env []string, bind string, args ...string) *brokerProc {
	t.Helper()
	all := append([]string{"--bind", bind, "--metrics-enabled=false", "--sys-interval", "0s", "--log-format", "json"}, args...)
	p := &brokerProc{t: t, cmd: exec.Command(binary, all...), notify: make(chan struct{}, 1), exited: make(chan struct{})}
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		scanner := bufio.NewScanner(stderr)
		scanner.Buffer(make([]byte, 64<<10), 1<<20)
		for scanner.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, scanner.Text())
			p.mu.Unlock()
			p.signal()
		}
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.signal()
		p.cmd.Wait()
		p.status = p.cmd.ProcessState.ExitCode()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

func (p *brokerProc) signal() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// waitLog waits for a log line containing want and returns it.
func (p *brokerProc) waitLog(want string, timeout time.Duration) (string, bool) {
	deadline := time.After(timeout) // a guard against a hung broker, not a wait for the event
	seen := 0
	for {
		p.mu.Lock()
		lines, closed := p.lines[seen:], p.closed
		seen = len(p.lines)
		p.mu.Unlock()
		for _, l := range lines {
			if strings.Contains(l, want) {
				return l, true
			}
		}
		if closed {
			return "", false
		}
		select {
		case <-p.notify:
		case <-deadline:
			return "", false
		}
	}
}

// log is everything the broker logged so far.
func (p *brokerProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// kill sends SIGKILL and waits for the process to be gone: no shutdown code runs.
func (p *brokerProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// stop sends SIGTERM and waits for a clean exit.
func (p *brokerProc) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(startTimeout):
		p.cmd.Process.Kill()
		return fmt.Errorf("promptmqd did not stop after SIGTERM")
	}
	if p.status != 0 {
		return fmt.Errorf("promptmqd exited with status %d after SIGTERM", p.status)
	}
	return nil
}

// wait waits for the process to exit by itself and returns its exit status.
func (p *brokerProc) wait(timeout time.Duration) (int, bool) {
	select {
	case <-p.exited:
		return p.status, true
	case <-time.After(timeout):
		return 0, false
	}
}
