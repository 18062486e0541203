package engine

import (
	"sync"
	"sync/atomic"
	"time"
)

// workers keeps the goroutines that have finished serving a connection, for the next one.
//
// Why: a new goroutine starts on a 2 KB stack, and CONNECT handling (authentication, the
// session attach, CONNACK) needs more, so every new connection paid a stack copy
// (runtime.copystack and its frame walk: 16% of the broker's user time in the
// connection-rate benchmark), besides the goroutine's creation and exit. A worker's stack
// has already grown; handing it the next connection costs one channel send.
//
// Bounds: at most maxIdleWorkers wait at once; a worker finding the pool full exits. Idle
// workers exit when a trim finds that none was taken since the previous trim (every
// workerTrimPeriod), so a quiet broker holds no spare stacks; the garbage collector also
// shrinks an idle worker's stack, which is why a burst after a long pause pays the copy
// again. All exit when the broker stops.
type workers struct {
	// handoff carries work to idle workers; a zero workItem retires the one receiving it.
	// Unbuffered: a send succeeds only into a waiting worker. Closed by close.
	handoff  chan workItem
	stop     chan struct{} // closed by close: trim ends
	idle     atomic.Int32
	taken    atomic.Uint64 // handoffs, for trim
	running  sync.WaitGroup
	trimming sync.WaitGroup
	closed   sync.Once
	// trimPeriod is workerTrimPeriod; tests shorten it.
	trimPeriod time.Duration
}

// workItem is a connection for a worker: a new one to serve, or a parked one to resume.
type workItem struct {
	c      *client
	resume bool
}

const (
	maxIdleWorkers   = 64
	workerTrimPeriod = 2 * time.Second
)

func newWorkers() *workers {
	return &workers{handoff: make(chan workItem), stop: make(chan struct{}), trimPeriod: workerTrimPeriod}
}

// start runs the item on an idle worker, or on a new goroutine when none waits. It is not
// called once close has begun: the broker's connections have all ended by then.
func (w *workers) start(item workItem) {
	select {
	case w.handoff <- item:
		w.taken.Add(1)
	default:
		w.running.Add(1)
		go w.loop(item)
	}
}

// loop serves items until it is retired or the pool is full or closed. One channel
// receive: a select over separate retire and stop channels cost 4% of the broker's user
// time in the connection-rate benchmark.
func (w *workers) loop(item workItem) {
	defer w.running.Done()
	for {
		if item.resume {
			item.c.run()
		} else {
			item.c.serve()
		}
		if w.idle.Add(1) > maxIdleWorkers {
			w.idle.Add(-1)
			return
		}
		var ok bool
		item, ok = <-w.handoff
		w.idle.Add(-1)
		if !ok || item.c == nil {
			return
		}
	}
}

// startTrim starts retiring idle workers whenever none was taken during a whole trim
// period, until close.
func (w *workers) startTrim() {
	w.trimming.Add(1)
	go func() {
		defer w.trimming.Done()
		w.trim()
	}()
}

func (w *workers) trim() {
	ticker := time.NewTicker(w.trimPeriod)
	defer ticker.Stop()
	last := w.taken.Load()
	for {
		select {
		case <-w.stop:
			return
		case <-ticker.C:
		}
		if taken := w.taken.Load(); taken != last {
			last = taken
			continue
		}
		// An idle worker that does not take the signal at once is between its count and its
		// wait, or has just been given work: the next trim sees it.
	retire:
		for n := w.idle.Load(); n > 0; n-- {
			select {
			case w.handoff <- workItem{}:
			default:
				break retire
			}
		}
		last = w.taken.Load()
	}
}

// close makes every idle worker exit, and each busy one once its connection ends, and
// waits for them. The caller has waited for every connection to end.
func (w *workers) close() {
	w.closed.Do(func() {
		close(w.stop)
		w.trimming.Wait() // no retire signal is sent after this
		close(w.handoff)
	})
	w.running.Wait()
}
