package engine

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/packets"
)

// TestNoGoroutineLeak: after 1,000 connect/subscribe/publish/disconnect cycles (half of
// them cut without DISCONNECT, a quarter leaving a session with a pending expiry timer),
// the goroutine count returns to its baseline. Not parallel: it counts every goroutine of
// the process.
func TestNoGoroutineLeak(t *testing.T) {
	b := newTestBrokerConfig(t, nil)
	// Idle workers (workers.go) are goroutines until a trim retires them.
	b.workers.trimPeriod = 100 * time.Millisecond
	addr := serveTestBroker(t, b)
	// The baseline is taken with the accept loop surely running and one idle connection,
	// which stays open to the end: both ends of the measure are the same steady state.
	idle := dialRaw(t, addr, packets.V5)
	idle.mustConnect("idle", nil)
	idle.ping()
	baseline := runtime.NumGoroutine()
	const cycles = 1000
	for i := range cycles {
		c := dialRaw(t, addr, packets.V5)
		if i%4 == 0 {
			// A session that outlives its connection, with its expiry timer pending: the
			// timers must cost no goroutine.
			c.mustConnect(fmt.Sprint("kept", i), expiring(60))
		} else {
			c.mustConnect(fmt.Sprint("leak", i%10), nil)
		}
		c.subscribe(1, 0, sub("leak", 1))
		c.pub("leak", 0, 0, "x")
		c.nextPublish()
		if i%2 == 0 {
			c.disconnect(packets.NormalDisconnection)
		} else {
			c.conn.Close() // an abrupt end takes the other path through the broker
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after %d cycles, baseline %d:\n%s", runtime.NumGoroutine(), cycles, baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
