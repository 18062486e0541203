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
	handoff chan workItem // unbuffered: a send succeeds only into a waiting worker
	stop    chan struct{}
	retire  chan struct{}
	idle    atomic.Int32
	taken   atomic.Uint64 // handoffs, for trim
	running sync.WaitGroup
	closed  sync.Once
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
	return &workers{handoff: make(chan workItem), stop: make(chan struct{}), retire: make(chan struct{}), trimPeriod: workerTrimPeriod}
}

// start runs the item on an idle worker, or on a new goroutine when none waits.
func (w *workers) start(item workItem) {
	select {
	case w.handoff <- item:
		w.taken.Add(1)
	default:
		w.running.Add(1)
		go w.loop(item)
	}
}

func (w *workers) loop(item workItem) {
	defer w.running.Done()
	for {
		if item.resume {
			item.c.run()
		} else {
			item.c.serve()
		}
		item = workItem{}
		if w.idle.Add(1) > maxIdleWorkers {
			w.idle.Add(-1)
			return
		}
		select {
		case item = <-w.handoff:
			w.idle.Add(-1)
		case <-w.retire:
			w.idle.Add(-1)
			return
		case <-w.stop:
			w.idle.Add(-1)
			return
		}
	}
}

// trim retires idle workers whenever none was taken during a whole period, until the
// broker stops.
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
			case w.retire <- struct{}{}:
			default:
				break retire
			}
		}
		last = w.taken.Load()
	}
}

// close makes every idle worker exit, and each busy one once its connection ends, and
// waits for them.
func (w *workers) close() {
	w.closed.Do(func() { close(w.stop) })
	w.running.Wait()
}
