package engine

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/x0a1b/promptmq/packets"
)

// Arrival order between connections.
//
// A client that subscribes and another that publishes a moment later expect the
// subscription to win, as it does on a broker that serves its sockets in arrival order
// (Mosquitto's one epoll loop). Goroutines do not keep that order: when the bytes of both
// arrive before the broker wakes (on a VM, waking an idle vCPU takes 100-300 µs), the
// runtime's netpoller hands both readers out in one batch, last event first, and two cores
// run them at once; the PUBLISH is routed before the SUBSCRIBE is applied and the new
// subscriber misses it. The Eclipse Paho suite does exactly this (test_subscribe_options,
// test_request_response): at normal priority it failed one run in three.
//
// What is ordered: plain TCP connections (TLS and WebSocket buffer above the socket), at
// the moments an order between clients is expected:
//   - the bytes a reader reads after a watched wait. A wait is watched (order_linux.go,
//     watch) after the client's CONNECT, SUBSCRIBE or UNSUBSCRIBE, and after a wait of
//     orderIdleWait or more. Epoll's ready list is in arrival order; whoever collects it
//     (a woken reader, under the order set's lock) gives each event the next sequence.
//   - the bytes a reader reads without waiting right after such a control packet: the
//     client answered before the reader was back at its socket. A place is taken before
//     the CONNACK, SUBACK or UNSUBACK can leave (afterControl), so it comes before anything
//     sent in reply. A PUBLISH read under that early place moves to a fresh place after
//     every event collected so far (it may have come much later); a SUBSCRIBE keeps it.
//
// A reader holding sequence s handles nothing it read until every smaller sequence is done
// (waitTurn), and is done itself once it has handled every byte it read (readLoop calls
// doneOrder when the Reader has nothing buffered), or when it waits, parks or ends. Bytes
// with no PUBLISH, SUBSCRIBE or UNSUBSCRIBE (acknowledgements, pings) take no turn, and
// bytes with no subscription change give their place up as soon as they have their turn.
//
// Not ordered: connections that are busy (their bytes are read as they come, with no
// wait), TLS and WebSocket, and parked connections (poll_idle.go), which have been silent
// for seconds and resume in event order among themselves only.
//
// Cost: a busy connection is never watched, so the hot path pays one atomic load per read.
// A watched wait pays an epoll_ctl when it starts and an epoll_wait when it ends;
// a control packet, two lock round trips for its place.
//
// Bounded: a reader waits for its turn at most orderMaxWait. Readers do not wait on later
// readers, so the waits form no cycle; the bound is for a predecessor that is slow for
// another reason (a stalled socket write, a descheduled thread) and keeps one slow client
// from holding up every other by more than that.
//
// Rejected: serving every plain TCP socket from the broker's epoll set (an event loop with
// a goroutine per ready socket): it would order busy connections too, but pays an
// epoll_ctl per wait and a goroutine handoff per read on the hot path; and a yield
// (runtime.Gosched) before routing a freshly read PUBLISH: measured, no better than
// nothing, since both readers already run in parallel on two cores.
type arrivalOrder struct {
	// low is the smallest sequence not yet done (next when all are): every sequence below
	// it is done. Read without the lock by waitTurn.
	low atomic.Uint64
	// timeouts counts the waits that ended at orderMaxWait.
	timeouts atomic.Uint64

	mu   sync.Mutex
	next uint64 // the sequence the next event gets
	// done[i] reports whether low+i is done; its length is next-low.
	done []bool
	// advanced is closed each time low moves, when a reader that spun for its turn long
	// enough made one to sleep on; nil while none sleeps (a channel per finish was one of
	// the allocations of every connection).
	advanced chan struct{}
}

// orderIdleWait is how long a reader must have waited for bytes to be watched on its next
// wait: a connection that sends many times a second is busy, and watching it would cost an
// epoll_ctl and an epoll_wait per wait (2-4% of the CPU of the pairs benchmark at 5 ms).
// Devices, and clients of request-response conversations and tests, pause far longer.
const orderIdleWait = 50 * time.Millisecond

// orderMaxWait bounds a reader's wait for its turn.
const orderMaxWait = 5 * time.Millisecond

// orderSpin is how long a reader yields before it sleeps: its predecessor is usually
// running on the other core or queued on this one, and done within microseconds; a
// goroutine woken from sleep takes 100 µs or more on a VM.
const orderSpin = 200 * time.Microsecond

func (o *arrivalOrder) initOrder() {
	o.next = 1
	o.low.Store(1)
}

// assign gives the next sequence number. The caller holds the order set's lock, so numbers
// follow the order events are collected in.
func (o *arrivalOrder) assign() uint64 {
	o.mu.Lock()
	seq := o.next
	o.next++
	o.done = append(o.done, false)
	o.mu.Unlock()
	return seq
}

// finish marks seq done, and moves low past every done sequence.
func (o *arrivalOrder) finish(seq uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	low := o.low.Load()
	if seq < low || seq >= o.next {
		return
	}
	o.done[seq-low] = true
	k := 0
	for k < len(o.done) && o.done[k] {
		k++
	}
	if k == 0 {
		return
	}
	n := copy(o.done, o.done[k:])
	clear(o.done[n:])
	o.done = o.done[:n]
	o.low.Store(low + uint64(k))
	if o.advanced != nil {
		close(o.advanced)
		o.advanced = nil
	}
}

// waitTurn returns once every sequence below seq is done, or after orderMaxWait. It
// yields while its predecessors run (on this core or the other), and sleeps only once that
// took orderSpin: a goroutine woken from sleep takes 100 µs or more to run on a VM.
func (o *arrivalOrder) waitTurn(seq uint64) {
	if o.low.Load() >= seq {
		return
	}
	start := time.Now()
	for o.low.Load() < seq {
		waited := time.Since(start)
		if waited >= orderMaxWait {
			o.timeouts.Add(1)
			return
		}
		if waited < orderSpin {
			runtime.Gosched()
			continue
		}
		o.mu.Lock()
		if o.advanced == nil {
			o.advanced = make(chan struct{})
		}
		advanced := o.advanced
		o.mu.Unlock()
		if o.low.Load() >= seq {
			return
		}
		t := time.NewTimer(orderMaxWait - waited)
		select {
		case <-advanced:
		case <-t.C:
		}
		t.Stop()
	}
}

// What a read holds, for its place in the arrival order.
const (
	orderNeutral = iota // acknowledgements, pings: nothing another client's packets depend on
	orderPublish        // a PUBLISH: it must not overtake an earlier subscription change
	orderChanges        // a SUBSCRIBE or UNSUBSCRIBE, or bytes it cannot tell (a partial header)
)

// orderKind classifies the bytes of one read, which start at a packet boundary. A
// connection whose read is not orderChanges gives up its place as soon as it has its turn
// (or at once, when orderNeutral), so a burst of idle publishers waking together is held
// up only by the reads before them, not by their routing.
func orderKind(b []byte) int {
	kind := orderNeutral
	for i := 0; i < len(b); {
		switch packets.Type(b[i] >> 4) {
		case packets.TypeSubscribe, packets.TypeUnsubscribe:
			return orderChanges
		case packets.TypePublish:
			kind = orderPublish
		}
		length, shift, j := 0, 0, i+1
		for ; ; j++ {
			if j == len(b) {
				return kind // the rest of a packet whose type is known
			}
			length |= int(b[j]&0x7f) << shift
			if b[j] < 0x80 {
				break
			}
			if shift += 7; shift > 21 {
				return orderChanges // malformed: the reader will end the connection
			}
		}
		i = j + 1 + length
	}
	return kind
}
