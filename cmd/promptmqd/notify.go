package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// notifier speaks the sd_notify(3) protocol of a service manager (systemd with Type=notify): one
// datagram of newline-separated VARIABLE=value assignments per state change, sent to the unix
// datagram socket named by $NOTIFY_SOCKET ("@name" is an abstract socket).
//
// Invariants: without $NOTIFY_SOCKET every method is a no-op, so promptmqd runs the same from a
// terminal; a failed send is logged and never stops the broker (the manager then times the start
// out, which is the right failure); watchdog pings go out only when $WATCHDOG_USEC is set and
// $WATCHDOG_PID, when set, names this process.
//
// Design: written by hand on net.DialUnix("unixgram"): the protocol is a single datagram, so the
// code is shorter than any wrapper. Rejected: linking libsystemd through cgo (breaks the static
// CGO_ENABLED=0 build the container image relies on) and a dependency such as coreos/go-systemd
// (go.mod admits no new module for a dozen lines).
type notifier struct {
	log  *slog.Logger
	addr *net.UnixAddr // nil: not started by a service manager
	// watchdog is the period of WATCHDOG=1 pings, half of $WATCHDOG_USEC as sd_watchdog_enabled(3)
	// advises; 0 when the manager runs no watchdog for this process.
	watchdog time.Duration
}

// newNotifier reads the service manager's environment through getenv (os.Getenv outside tests).
func newNotifier(getenv func(string) string, log *slog.Logger) *notifier {
	n := &notifier{log: log}
	socket := getenv("NOTIFY_SOCKET")
	if socket == "" {
		return n
	}
	n.addr = &net.UnixAddr{Name: socket, Net: "unixgram"} // Go maps a leading '@' to the abstract namespace
	usec, err := strconv.ParseInt(getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return n
	}
	if pid := getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return n // the watchdog is meant for another process (a wrapper that exec'd us, say)
	}
	n.watchdog = time.Duration(usec) * time.Microsecond / 2
	return n
}

// send writes one notification; state is one or more VARIABLE=value lines.
func (n *notifier) send(state string) error {
	if n.addr == nil {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: connect to NOTIFY_SOCKET %s: %w", n.addr.Name, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: send %q to %s: %w", state, n.addr.Name, err)
	}
	return nil
}

func (n *notifier) sendLogged(state string) {
	if err := n.send(state); err != nil {
		n.log.Warn("service manager notification failed", "err", err)
	}
}

// announce tells the service manager the broker is ready, keeps its watchdog fed while ctx lives
// and says STOPPING=1 the moment ctx is done, before the graceful shutdown begins. Call it once
// recovery has run and the listeners are open. The returned function waits until STOPPING=1 has
// been sent and the watchdog has stopped; call it after the broker has stopped.
func (n *notifier) announce(ctx context.Context, addrs []net.Addr) (stopped func()) {
	listening := make([]string, len(addrs))
	for i, a := range addrs {
		listening[i] = a.String()
	}
	// STATUS is what `systemctl status promptmqd` shows beside the unit's state.
	n.sendLogged("READY=1\nSTATUS=listening on " + strings.Join(listening, ", "))
	var once sync.Once
	stopping := func() { once.Do(func() { n.sendLogged("STOPPING=1\nSTATUS=shutting down") }) }
	cancelStopping := context.AfterFunc(ctx, stopping)
	watchdogDone := make(chan struct{})
	if n.watchdog > 0 && n.addr != nil {
		go n.feedWatchdog(ctx, watchdogDone)
	} else {
		close(watchdogDone)
	}
	return func() {
		cancelStopping()
		stopping() // waits for the AfterFunc's send if it is under way: Once.Do returns when done
		<-watchdogDone
	}
}

// feedWatchdog pings until ctx is done. A ping proves the process is scheduled and its runtime
// alive; a deadlocked broker whose runtime still runs is caught by /health, not here.
func (n *notifier) feedWatchdog(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	ticker := time.NewTicker(n.watchdog)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			n.sendLogged("WATCHDOG=1")
		}
	}
}
