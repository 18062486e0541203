package engine

import (
	"testing"
	"time"

	"github.com/x0a1b/promptmq/packets"
)

// TestWorkersServeTheNextConnection: the goroutine that served a connection waits for the
// next one and is handed it; idle workers are retired when a trim period passes without a
// connection; all are gone once the broker stops.
func TestWorkersServeTheNextConnection(t *testing.T) {
	t.Parallel()
	b := newTestBrokerConfig(t, nil)
	b.workers.trimPeriod = 200 * time.Millisecond
	t.Cleanup(func() {
		// Serve has returned (cleanups run last first): every worker has exited.
		if n := b.workers.idle.Load(); n != 0 {
			t.Errorf("%d idle workers after the broker stopped", n)
		}
	})
	addr := serveTestBroker(t, b)

	cycle := func(id string) {
		c := dialRaw(t, addr, packets.V5)
		c.mustConnect(id, nil)
		c.disconnect(packets.NormalDisconnection)
		c.expectClosed()
	}
	cycle("first")
	eventually(t, 5*time.Second, "the first connection's goroutine to wait as a worker", func() bool {
		return b.workers.idle.Load() == 1
	})
	taken := b.workers.taken.Load()
	cycle("second")
	eventually(t, 5*time.Second, "the second connection to be served by the idle worker", func() bool {
		return b.workers.taken.Load() == taken+1 && b.workers.idle.Load() == 1
	})
	eventually(t, 5*time.Second, "idle workers to be retired", func() bool {
		return b.workers.idle.Load() == 0
	})
	cycle("third") // served by a new goroutine again
}
