package main

import (
	"os"
	"strings"
	"syscall"
)

// sysmonSetting keeps the Go runtime's monitor thread (sysmon) out of its idle sleep.
//
// Why: sysmon sleeps while every P is idle, and the first system call made through the
// scheduler (accept, close: the net package's) wakes it. Woken that way it starts over at
// its shortest period, 20 µs, and only backs off after 1 ms without finding a P to retake;
// a broker whose load comes in bursts (a short idle between each) wakes it again and
// again. On a core the broker shares with it, every 20 µs tick is a timer, two context
// switches and, on a VM, exits to the hypervisor: in the connection-rate benchmark
// (bench/compare.sh connrate, broker pinned to one core) that was 25-30% of the broker's
// CPU time, measured against a runtime patched not to reset the period (docs/tuning.md).
// With schedtrace set the runtime never puts sysmon into that sleep, so its period stays
// backed off at 10 ms; the trace it asks for is printed only every 2^31 ms (24.8 days).
const sysmonSetting = "schedtrace=2147483647"

// sysmonEnv is the environment to re-execute with so that the setting takes effect (the
// runtime reads it at start only), or nil when GODEBUG already has it or names schedtrace
// itself (GODEBUG=schedtrace=0 turns this off).
func sysmonEnv(environ []string) []string {
	for i, kv := range environ {
		v, ok := strings.CutPrefix(kv, "GODEBUG=")
		if !ok {
			continue
		}
		for _, field := range strings.Split(v, ",") {
			if strings.HasPrefix(field, "schedtrace=") {
				return nil
			}
		}
		env := append([]string(nil), environ...)
		if v == "" {
			env[i] = "GODEBUG=" + sysmonSetting
		} else {
			env[i] = kv + "," + sysmonSetting
		}
		return env
	}
	return append(append([]string(nil), environ...), "GODEBUG="+sysmonSetting)
}

// tuneRuntime re-executes the program with sysmonSetting when it is missing. Exec keeps the
// process id, open files and signal dispositions, so service managers see one process; if
// exec fails the broker runs on without the setting.
func tuneRuntime() {
	env := sysmonEnv(os.Environ())
	if env == nil {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	_ = syscall.Exec(exe, os.Args, env)
}
