package main

import (
	"context"
	"strings"
	"testing"
)

// The same paths as the subprocess tests, run in-process so their coverage is measured and a failure
// points at a line.
func TestRunInProcess(t *testing.T) {
	bad := writeConfig(t, "[storage.sqlite]\ncache-sise = 1\n")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel() // the broker case starts and stops at once
	cases := []struct {
		name       string
		ctx        context.Context
		args       []string
		status     int
		wantStdout string
		wantStderr string
	}{
		{"check-config", context.Background(), []string{"check-config", "--max-qos", "1"}, 0, "max-qos = 1\n", ""},
		{"version", context.Background(), []string{"version"}, 0, "commit ", ""},
		{"bad file", context.Background(), []string{"check-config", "-c", bad}, 2, "", "did you mean cache-size?"},
		{"bad flag", context.Background(), []string{"--max-qos", "9"}, 2, "", "mqtt.max-qos: 9 is out of range"},
		{"stray argument", context.Background(), []string{"serve"}, 2, "", `unexpected argument "serve"`},
		{"unknown flag", context.Background(), []string{"--nope"}, 2, "", "flag provided but not defined"},
		{"broker", cancelled, []string{"--bind", "127.0.0.1:0", "--metrics-enabled=false", "--data-dir", "", "--sys-interval", "0s"},
			0, "", "promptmqd stopped"},
	}
	for _, tc := range cases {
		var stdout, stderr strings.Builder
		status := run(tc.ctx, append([]string{"promptmqd"}, tc.args...), &stdout, &stderr)
		if status != tc.status || !strings.Contains(stdout.String(), tc.wantStdout) || !strings.Contains(stderr.String(), tc.wantStderr) {
			t.Errorf("%s: status %d (want %d)\nstdout %q (want ...%s...)\nstderr %q (want ...%s...)",
				tc.name, status, tc.status, stdout.String(), tc.wantStdout, stderr.String(), tc.wantStderr)
		}
	}
}
