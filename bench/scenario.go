package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// topology is the shape of a message-flow scenario: who publishes where,
// who subscribes to what, and at what pace.
type topology struct {
	publishers  []*publisher
	subscribers []*subscriber
	filters     []string // per subscriber
}

func buildTopology(c config, base time.Time) topology {
	var t topology
	newPub := func(topic string, fanout, window int) *publisher {
		p := &publisher{
			index: len(t.publishers), topic: []byte(topic), qos: c.qos, size: c.size,
			fanout: uint64(fanout), window: uint64(max(window, 1)), inflight: uint64(c.inflight),
			base: base, wake: make(chan struct{}, 1), ackDone: make(chan struct{}),
		}
		t.publishers = append(t.publishers, p)
		return p
	}
	newSub := func(filter string) {
		t.subscribers = append(t.subscribers, &subscriber{index: len(t.subscribers), base: base})
		t.filters = append(t.filters, filter)
	}
	switch c.scenario {
	case "fanin":
		// The subscriber's window is shared by every publisher.
		for i := range c.publishers {
			newPub(fmt.Sprintf("%s/fanin/%d", c.prefix, i), 1, c.window/c.publishers)
		}
		newSub(c.prefix + "/fanin/#")
	case "pairs", "latency":
		for i := range c.pairs {
			p := newPub(fmt.Sprintf("%s/pair/%d", c.prefix, i), 1, c.window)
			if c.scenario == "latency" {
				p.interval = time.Duration(float64(time.Second) * float64(c.pairs) / float64(c.rate))
				p.phase = p.interval * time.Duration(i) / time.Duration(c.pairs)
			}
			newSub(fmt.Sprintf("%s/pair/%d", c.prefix, i))
		}
	case "fanout":
		newPub(c.prefix+"/fanout", c.subscribers, c.window)
		for range c.subscribers {
			newSub(c.prefix + "/fanout")
		}
	}
	for _, s := range t.subscribers {
		s.publishers = t.publishers
		s.streams = make([]stream, len(t.publishers))
		if c.scenario == "latency" {
			s.latency = new(histogram)
		}
	}
	return t
}

// connectAll runs open for 0..n-1 with c.workers at a time and returns the
// first error.
func connectAll(ctx context.Context, n, workers int, open func(i int, d *dialer) error, newDialer func() *dialer) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan int)
	for range min(workers, max(n, 1)) {
		wg.Go(func() {
			d := newDialer()
			for i := range next {
				if err := open(i, d); err != nil {
					mu.Lock()
					first = firstErr(first, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// runFlow runs fanin, pairs, fanout or latency.
func runFlow(ctx context.Context, c config, res *result) error {
	base := time.Now()
	t := buildTopology(c, base)
	var conns []net.Conn
	var connMu sync.Mutex
	defer func() {
		for _, conn := range conns {
			_ = conn.Close()
		}
	}()
	keep := func(conn net.Conn) {
		connMu.Lock()
		conns = append(conns, conn)
		connMu.Unlock()
	}
	newD := func() *dialer { return newDialer(c.addr, 1) }
	err := connectAll(ctx, len(t.subscribers), 32, func(i int, d *dialer) error {
		conn, err := d.dial()
		if err != nil {
			return err
		}
		keep(conn)
		s, err := handshake(conn, connectOptions{version: c.version, clientID: fmt.Sprintf("%s-sub-%d", c.prefix, i), keepAlive: 600, readSize: c.readSize})
		if err != nil {
			return err
		}
		t.subscribers[i].session = s
		return s.subscribe(t.filters[i], c.qos)
	}, newD)
	if err != nil {
		return fmt.Errorf("subscribers: %w", err)
	}
	err = connectAll(ctx, len(t.publishers), 32, func(i int, d *dialer) error {
		conn, err := d.dial()
		if err != nil {
			return err
		}
		keep(conn)
		s, err := handshake(conn, connectOptions{version: c.version, clientID: fmt.Sprintf("%s-pub-%d", c.prefix, i), keepAlive: 600, readSize: 16 << 10})
		if err != nil {
			return err
		}
		p := t.publishers[i]
		p.session = s
		p.inflight = min(p.inflight, uint64(s.receiveMaximum))
		return nil
	}, newD)
	if err != nil {
		return fmt.Errorf("publishers: %w", err)
	}

	var subsDone sync.WaitGroup
	for _, s := range t.subscribers {
		subsDone.Go(s.run)
	}
	for _, p := range t.publishers {
		go p.readAcks()
	}
	stop := make(chan struct{})
	var pubsDone sync.WaitGroup
	pubErrs := make([]error, len(t.publishers))
	for i, p := range t.publishers {
		pubsDone.Go(func() { pubErrs[i] = p.run(stop) })
	}

	sleepCtx(ctx, c.warmup)
	pub0, del0 := t.totals()
	m := startMeter(c.brokerPID)
	sleepCtx(ctx, c.duration)
	pub1, del1 := t.totals()
	m.stop(res)
	close(stop)
	pubsDone.Wait()

	res.Published = pub1 - pub0
	res.Delivered = del1 - del0
	res.drain = t.drain(c.qos)
	for _, conn := range conns {
		_ = conn.Close()
	}
	subsDone.Wait()
	for _, p := range t.publishers {
		<-p.ackDone
	}
	t.account(res)
	for _, e := range pubErrs {
		res.addError(e)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// totals is messages published and delivered so far.
func (t *topology) totals() (published, delivered uint64) {
	for _, p := range t.publishers {
		published += p.sent.Load()
	}
	for _, s := range t.subscribers {
		delivered += s.received.Load()
	}
	return published, delivered
}

// drainQuiet is how long the drain waits without progress before it
// declares the missing messages lost.
const drainQuiet = 5 * time.Second

// drain waits until every publish is acknowledged and delivered, or
// nothing moved for drainQuiet, and returns how long it took.
func (t *topology) drain(qos byte) time.Duration {
	start := time.Now()
	lastProgress := start
	var last uint64
	for {
		done := true
		var progress uint64
		for _, p := range t.publishers {
			sent := p.sent.Load()
			acked, delivered := p.acked.Load(), p.delivered.Load()
			progress += acked + delivered
			if delivered < sent*p.fanout || (qos > 0 && acked < sent) {
				done = false
			}
		}
		if done {
			return time.Since(start)
		}
		if progress != last {
			last, lastProgress = progress, time.Now()
		} else if time.Since(lastProgress) > drainQuiet {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond) // polling a finished run, off the measured window
	}
}

// account counts loss, duplicates, order and latency once every
// subscriber has stopped.
func (t *topology) account(res *result) {
	var expected, unique uint64
	for _, p := range t.publishers {
		expected += p.sent.Load() * p.fanout
		res.Refused += p.refused.Load()
		if p.ackErr != nil {
			res.addError(p.ackErr)
		}
	}
	var lat histogram
	var drains uint64
	for _, s := range t.subscribers {
		drains += s.drains
		for i := range s.streams {
			st := &s.streams[i]
			unique += st.unique
			res.Duplicated += st.duplicates
			res.OutOfOrder += st.outOfOrder
		}
		res.Foreign += s.foreign
		if s.err != nil {
			res.addError(s.err)
		}
		if s.latency != nil {
			lat.merge(s.latency)
		}
	}
	if drains > 0 {
		res.MsgsPerRead = float64(unique+res.Duplicated) / float64(drains)
	}
	if expected > unique {
		res.Lost = expected - unique
	}
	res.TotalPublished = 0
	for _, p := range t.publishers {
		res.TotalPublished += p.sent.Load()
	}
	res.TotalExpected = expected
	if lat.total > 0 {
		res.setLatency(&lat)
	}
}
