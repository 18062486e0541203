package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/x0a1b/promptmq/packets"
)

// idleSettle is how long idle connections sit before the broker's RSS is
// read, so that allocations of the connect burst have been made and
// buffers a broker returns after the handshake are returned. PromptMQ parks
// a connection that has been silent for 4 to 5 s (engine/poll_idle.go) and
// gives the freed stacks back a sweep later: 8 s sees that state.
const idleSettle = 8 * time.Second

// runConns holds c.conns idle connections and reports the broker's
// resident memory per connection: the RSS growth over the RSS before.
func runConns(ctx context.Context, c config, res *result) error {
	if c.brokerPID == 0 {
		res.addError(fmt.Errorf("conns: without -broker-pid only the connect rate is measured"))
	}
	var before procSample
	if c.brokerPID > 0 {
		var err error
		if before, err = readProc(c.brokerPID); err != nil {
			return err
		}
	}
	conns := make([]net.Conn, c.conns)
	defer func() {
		for _, conn := range conns {
			if conn != nil {
				_ = conn.Close()
			}
		}
	}()
	m := startMeter(c.brokerPID)
	err := connectAll(ctx, c.conns, c.workers, func(i int, d *dialer) error {
		conn, err := d.dial()
		if err != nil {
			return err
		}
		conns[i] = conn
		// The session (and its Reader) is dropped: an idle connection
		// costs the generator one socket and nothing else.
		_, err = handshake(conn, connectOptions{version: c.version, clientID: fmt.Sprintf("%s-idle-%d", c.prefix, i), keepAlive: 0, readSize: 64})
		return err
	}, func() *dialer { return newDialer(c.addr, c.sources) })
	m.stop(res)
	if err != nil {
		return fmt.Errorf("conns: %w", err)
	}
	res.Conns = c.conns
	res.ConnectRate = float64(c.conns) / res.Seconds
	if res.BrokerCPU > 0 {
		res.PerBrokerCPUSec = float64(c.conns) / res.BrokerCPU
	}
	sleepCtx(ctx, idleSettle)
	if c.brokerPID > 0 {
		after, err := readProc(c.brokerPID)
		if err != nil {
			return err
		}
		res.BrokerRSSKB = after.rss / 1024
		res.RSSPerConnKB = float64(after.rss-before.rss) / 1024 / float64(c.conns)
	}
	sleepCtx(ctx, c.hold)
	return nil
}

// runConnRate runs CONNECT / CONNACK / DISCONNECT cycles on c.workers
// connections at a time and reports cycles per second and per broker
// CPU-second.
func runConnRate(ctx context.Context, c config, res *result) error {
	var cycles atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, c.workers)
	for w := range c.workers {
		wg.Go(func() {
			d := newDialer(c.addr, c.sources)
			d.next = w // spread the workers over the source addresses
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := connectCycle(d, c.version, fmt.Sprintf("%s-cr-%d-%d", c.prefix, w, n)); err != nil {
					errs[w] = err
					return
				}
				cycles.Add(1)
			}
		})
	}
	sleepCtx(ctx, c.warmup)
	n0 := cycles.Load()
	m := startMeter(c.brokerPID)
	sleepCtx(ctx, c.duration)
	n1 := cycles.Load()
	m.stop(res)
	close(stop)
	wg.Wait()
	for _, e := range errs {
		res.addError(e)
	}
	res.Cycles = n1 - n0
	res.ConnectRate = float64(res.Cycles) / res.Seconds
	if res.BrokerCPU > 0 {
		res.PerBrokerCPUSec = float64(res.Cycles) / res.BrokerCPU
	}
	return nil
}

// connectCycle connects, sends DISCONNECT and waits for the broker to close
// the connection [MQTT-3.14.4-1], so the port is free when it returns.
func connectCycle(d *dialer, version byte, clientID string) error {
	conn, err := d.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	s, err := handshake(conn, connectOptions{version: version, clientID: clientID, keepAlive: 60, readSize: 64})
	if err != nil {
		return err
	}
	disc := packets.Disconnect{Version: version}
	if _, err := conn.Write(disc.Append(nil)); err != nil {
		return fmt.Errorf("DISCONNECT: %w", err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return fmt.Errorf("deadline: %w", err)
	}
	if _, _, err := s.reader.ReadPacket(); err == nil || !isClosed(err) {
		return fmt.Errorf("after DISCONNECT the broker did not close: %v", err)
	}
	return nil
}
