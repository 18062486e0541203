package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestSysmonEnv(t *testing.T) {
	cases := []struct {
		name    string
		environ []string
		want    []string // nil: no re-execution
	}{
		{"no GODEBUG", []string{"HOME=/root"}, []string{"HOME=/root", "GODEBUG=" + sysmonSetting}},
		{"empty GODEBUG", []string{"GODEBUG=", "A=1"}, []string{"GODEBUG=" + sysmonSetting, "A=1"}},
		{"other settings kept", []string{"GODEBUG=gctrace=1"}, []string{"GODEBUG=gctrace=1," + sysmonSetting}},
		{"already set", []string{"GODEBUG=" + sysmonSetting}, nil},
		{"turned off by the user", []string{"GODEBUG=gctrace=1,schedtrace=0"}, nil},
		{"a user's own trace period", []string{"GODEBUG=schedtrace=1000"}, nil},
		{"a name that only ends like it", []string{"GODEBUG=xschedtrace=1"}, []string{"GODEBUG=xschedtrace=1," + sysmonSetting}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := sysmonEnv(c.environ)
			if !slices.Equal(got, c.want) {
				t.Fatalf("sysmonEnv(%q) = %q, want %q", c.environ, got, c.want)
			}
		})
	}
}

// TestDaemonRunsWithSysmonSetting: the started process (same pid after the re-execution)
// runs with the setting in its environment, and a user's own schedtrace is left alone.
func TestDaemonRunsWithSysmonSetting(t *testing.T) {
	t.Parallel()
	environOf := func(p *brokerProc) string {
		t.Helper()
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.cmd.Process.Pid))
		if err != nil {
			t.Skipf("no /proc: %v", err)
		}
		return strings.ReplaceAll(string(raw), "\x00", "\n")
	}
	p := startBroker(t, "127.0.0.1:0", "--data-dir", "")
	if env := environOf(p); !strings.Contains(env, "GODEBUG="+sysmonSetting+"\n") && !strings.Contains(env, ","+sysmonSetting+"\n") {
		t.Fatalf("GODEBUG without %s:\n%s", sysmonSetting, env)
	}
	own := launchBrokerEnv(t, []string{"GODEBUG=schedtrace=0"}, "127.0.0.1:0", "--data-dir", "")
	if _, ok := own.waitLog(`"msg":"listening"`, startTimeout); !ok {
		t.Fatalf("promptmqd did not start; log:\n%s", own.log())
	}
	if env := environOf(own); strings.Contains(env, sysmonSetting) {
		t.Fatalf("the user's GODEBUG=schedtrace=0 was overridden:\n%s", env)
	}
}
