package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/conf"
)

// binary is the promptmqd built once by TestMain with known version and commit; the tests run it as
// a user would, so exit statuses, stdout and stderr are what a user sees.
var binary string

const (
	testVersion = "1.2.3-test"
	testCommit  = "c0ffee1"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "promptmqd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "promptmqd")
	build := exec.Command("go", "build", "-o", binary,
		"-ldflags", "-X main.version="+testVersion+" -X main.commit="+testCommit, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building promptmqd:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	status         int
	stdout, stderr string
}

func promptmqd(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running promptmqd %v: %v", args, err)
	}
	return result{status: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "promptmq.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Each bad configuration exits with status 2 and names every problem on stderr.
func TestBadConfigurationExitsTwo(t *testing.T) {
	cases := []struct {
		name string
		toml string
		args []string
		want []string
	}{
		{"misspelt key", "[storage.sqlite]\ncache-sise = 1\n", nil,
			[]string{"storage.sqlite.cache-sise", "did you mean cache-size?"}},
		{"value not allowed", "[storage.sqlite]\nsynchronous = \"SOMETIMES\"\n", nil,
			[]string{"storage.sqlite.synchronous", `"SOMETIMES"`, "OFF, NORMAL, FULL, EXTRA"}},
		{"three mistakes", "[mqtt]\nmax-qos = 3\nkeep-alive = \"1m\"\n[server]\nws-path = \"mqtt\"\n", nil,
			[]string{"(3 problems)", "mqtt.max-qos: 3 is out of range; allowed: 0..2",
				`mqtt.keep-alive: expected an integer, got string "1m"`, `server.ws-path: "mqtt" must start with /`}},
		{"file and flag problems together", "[mqtt]\nmax-qos = 3\n", []string{"--max-inflight", "many"},
			[]string{"(2 problems)", "mqtt.max-qos", `mqtt.max-inflight: "many" is not an integer (from --max-inflight)`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.toml)
			for _, args := range [][]string{
				append([]string{"check-config", "-c", path}, tc.args...),
				append([]string{"-c", path}, tc.args...), // the broker itself refuses to start
			} {
				r := promptmqd(t, args...)
				if r.status != 2 {
					t.Errorf("promptmqd %v: exit status %d, want 2; stderr:\n%s", args, r.status, r.stderr)
				}
				for _, w := range tc.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("promptmqd %v: stderr lacks %q:\n%s", args, w, r.stderr)
					}
				}
			}
		})
	}
}

func TestBadCommandLineExitsTwo(t *testing.T) {
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"check-config", "--no-such-flag"},
		{"check-config", "-c", filepath.Join(t.TempDir(), "absent.toml")},
		{"check-config", "stray-argument"},
		{"no-such-command"},
	} {
		if r := promptmqd(t, args...); r.status != 2 || r.stderr == "" {
			t.Errorf("promptmqd %v: exit status %d, want 2 with a message; stderr %q", args, r.status, r.stderr)
		}
	}
}

// check-config prints the effective configuration as TOML, which loads back to the same configuration.
func TestCheckConfigPrintsEffectiveConfiguration(t *testing.T) {
	const production = "../../conf/examples/production.toml"
	r := promptmqd(t, "check-config", "-c", production)
	if r.status != 0 {
		t.Fatalf("exit status %d, stderr:\n%s", r.status, r.stderr)
	}
	want, err := conf.Load(production)
	if err != nil {
		t.Fatal(err)
	}
	printed, err := conf.Load(writeConfig(t, r.stdout))
	if err != nil {
		t.Fatalf("printed configuration does not load: %v\n%s", err, r.stdout)
	}
	if !reflect.DeepEqual(printed, want) {
		t.Errorf("printed configuration differs from the file's:\n%s", r.stdout)
	}
	for _, line := range []string{"[storage.sqlite]", `data-dir = "/var/lib/promptmq"`, `tls-bind = "0.0.0.0:8883"`} {
		if !strings.Contains(r.stdout, line+"\n") {
			t.Errorf("output lacks %q", line)
		}
	}
}

// Flags win over the file, before or after the command name; the innermost flag wins over an outer one.
func TestFlagsOverrideTheFile(t *testing.T) {
	path := writeConfig(t, "[storage.sqlite]\ncache-size = 100\n[metrics]\nenabled = true\n")
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"check-config", "-c", path}, []string{"cache-size = 100\n"}},
		{[]string{"check-config", "-c", path, "--sqlite-cache-size", "5000"}, []string{"cache-size = 5000\n"}},
		{[]string{"--sqlite-cache-size", "5000", "-c", path, "check-config"}, []string{"cache-size = 5000\n"}},
		{[]string{"-c", path, "--sqlite-cache-size", "1", "check-config", "--sqlite-cache-size", "2"}, []string{"cache-size = 2\n"}},
		{[]string{"check-config", "-c", path, "--metrics-enabled=false", "--bind", "127.0.0.1:1884", "--max-memory", "2GiB", "--log-level", "DEBUG"},
			[]string{"enabled = false\n", `bind = "127.0.0.1:1884"` + "\n", `max-memory = "2GiB"` + "\n", `level = "debug"` + "\n"}},
		{[]string{"--sqlite-synchronous", "full", "check-config"}, []string{`synchronous = "FULL"` + "\n", "cache-size = -65536\n"}},
	}
	for _, tc := range cases {
		r := promptmqd(t, tc.args...)
		if r.status != 0 {
			t.Errorf("promptmqd %v: exit status %d:\n%s", tc.args, r.status, r.stderr)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("promptmqd %v: output lacks %q", tc.args, w)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	r := promptmqd(t, "version")
	if r.status != 0 {
		t.Fatalf("exit status %d: %s", r.status, r.stderr)
	}
	for _, w := range []string{testVersion, testCommit, runtime.Version()} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("version output %q lacks %q", r.stdout, w)
		}
	}
}

// SIGTERM after start-up stops the broker gracefully: exit status 0 and a final "stopped" line.
func TestSIGTERMStopsGracefully(t *testing.T) {
	cmd := exec.Command(binary, "--bind", "127.0.0.1:0", "--metrics-enabled=false", "--data-dir", "",
		"--sys-interval", "0s", "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		scanner := bufio.NewScanner(stderr)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
	}()
	var output []string
	waitFor := func(msg string) {
		t.Helper()
		deadline := time.After(30 * time.Second) // a guard against a hung broker, not a wait for the event
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("stderr closed before %q; output:\n%s", msg, strings.Join(output, "\n"))
				}
				output = append(output, line)
				if strings.Contains(line, `"msg":"`+msg+`"`) {
					return
				}
			case <-deadline:
				cmd.Process.Kill()
				t.Fatalf("no %q line within 30s; output:\n%s", msg, strings.Join(output, "\n"))
			}
		}
	}
	waitFor(startupMessage)
	start := output[len(output)-1]
	for _, w := range []string{`"version":"` + testVersion + `"`, `"listeners":["mqtt://127.0.0.1:0"]`, `"data-dir":"(in memory)"`, `"durability":"none`} {
		if !strings.Contains(start, w) {
			t.Errorf("start-up line lacks %s: %s", w, start)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor("promptmqd stopped")
	for range lines { // drain so Wait can return
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v; output:\n%s", err, strings.Join(output, "\n"))
	}
}
