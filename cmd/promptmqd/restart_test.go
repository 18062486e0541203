package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/packets"
)

// TestRestartKeepsRetainedAndSessions: 100,000 retained messages and 10,000 persistent sessions
// with their subscriptions survive a restart (issue 7). The retained messages are filled by
// several pipelined publishers, the sessions by several connections in parallel. After the
// restart one subscriber receives every retained message, and one publish reaches all 10,000
// sessions through subscriptions that exist only because recovery rebuilt them.
//
// PROMPTMQ_RESTART_RETAINED and PROMPTMQ_RESTART_SESSIONS change the counts; the recovery time of
// 1,000,000 retained messages is TestRecoveryTimeRetained.
func TestRestartKeepsRetainedAndSessions(t *testing.T) {
	retained := envInt("PROMPTMQ_RESTART_RETAINED", 100000)
	sessions := envInt("PROMPTMQ_RESTART_SESSIONS", 10000)
	dir := t.TempDir()
	// Retained messages for a new subscription go through the session's queue, bounded by
	// mqtt.max-queued-messages (1,000 by default): the reader needs room for all of them.
	args := append(durableArgs(dir), "--max-queued-messages", strconv.Itoa(retained+1))
	broker := startBroker(t, "127.0.0.1:0", args...)
	addr := broker.addr

	start := time.Now()
	fillRetained(t, addr, retained)
	t.Logf("filled %d retained messages in %v", retained, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	parallel(t, sessions, func(i int) error {
		c, err := dialMQTT(addr, "session-"+strconv.Itoa(i), true, 3600)
		if err != nil {
			return err
		}
		defer c.disconnect()
		if err := c.subscribe("own/"+strconv.Itoa(i), 1); err != nil {
			return err
		}
		return c.subscribe("everyone/#", 1)
	})
	t.Logf("created %d persistent sessions with 2 subscriptions each in %v", sessions, time.Since(start).Round(time.Millisecond))

	if err := broker.stop(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	broker = startBroker(t, addr, args...)
	listening := time.Since(started)
	line, _ := broker.waitLog("persist: recovered", time.Second)
	var rec struct {
		Sessions, Subscriptions, Retained int
		Took                              time.Duration
	}
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("recovery line %q: %v", line, err)
	}
	t.Logf("restart: recovered %d sessions, %d subscriptions, %d retained in %v; listening %v after start",
		rec.Sessions, rec.Subscriptions, rec.Retained, rec.Took.Round(time.Millisecond), listening.Round(time.Millisecond))
	if rec.Sessions != sessions || rec.Subscriptions != 2*sessions || rec.Retained != retained {
		t.Errorf("recovered %+v, want %d sessions, %d subscriptions, %d retained", rec, sessions, 2*sessions, retained)
	}

	// Every retained message is delivered to a new subscription.
	sub, err := dialMQTT(addr, "retained-reader", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.subscribe("retained/#", 0); err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]bool, retained)
	for len(seen) < retained {
		typ, err := sub.read()
		if err != nil {
			t.Fatalf("after %d retained messages: %v", len(seen), err)
		}
		if typ == packets.TypePublish && sub.pkt.Publish.Retain {
			seen[string(sub.pkt.Publish.Topic)] = true
		}
	}
	sub.disconnect()

	// One publish reaches every session through its recovered subscription; each session is
	// present and gets it.
	pub, err := dialMQTT(addr, "announcer", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.publishPipelined(1, 1, false, fixedTopic("everyone/news"), seqPayload(8), nil); err != nil {
		t.Fatal(err)
	}
	pub.disconnect()
	parallel(t, sessions, func(i int) error {
		c, err := dialMQTT(addr, "session-"+strconv.Itoa(i), false, 3600)
		if err != nil {
			return err
		}
		defer c.disconnect()
		if !c.connack.SessionPresent {
			return fmt.Errorf("session-%d: not present after restart", i)
		}
		for {
			typ, err := c.read()
			if err != nil {
				return fmt.Errorf("session-%d: %w", i, err)
			}
			if typ == packets.TypePublish && string(c.pkt.Publish.Topic) == "everyone/news" {
				return nil
			}
		}
	})
	if err := broker.stop(); err != nil {
		t.Error(err)
	}
}

// fillRetained stores count retained messages (64 B, topics retained/<publisher>/<n>) through
// four pipelined QoS 1 publishers in parallel; it returns when every one is acknowledged.
func fillRetained(t testing.TB, addr string, count int) {
	t.Helper()
	const publishers = 4
	parallel(t, publishers, func(p int) error {
		c, err := dialMQTT(addr, "retainer-"+strconv.Itoa(p), true, 0)
		if err != nil {
			return err
		}
		defer c.disconnect()
		n := count / publishers
		if p == publishers-1 {
			n = count - n*(publishers-1)
		}
		prefix := "retained/" + strconv.Itoa(p) + "/"
		var failed error
		err = c.publishPipelined(n, c.receiveMaximum, true, func(i int) string { return prefix + strconv.Itoa(i) }, seqPayload(64),
			func(a ackResult) {
				if a.reason != packets.Success && failed == nil {
					failed = fmt.Errorf("retained publish %d refused: %v", a.index, a.reason)
				}
			})
		if err != nil {
			return err
		}
		return failed
	})
}

// parallel runs fn(0..n-1) on 16 goroutines and fails the test with the first error.
func parallel(t testing.TB, n int, fn func(i int) error) {
	t.Helper()
	const workers = 16
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

// TestRecoveryTimeRetained measures how long promptmqd takes to recover 1,000,000 retained
// messages (issue 7's target: under 3 seconds). It fills the store through the broker first,
// which takes a while, so it runs only with PROMPTMQ_RECOVERY_RETAINED set (make crashtest):
//
//	PROMPTMQ_RECOVERY_RETAINED=1000000 go test -run TestRecoveryTimeRetained -v ./cmd/promptmqd
func TestRecoveryTimeRetained(t *testing.T) {
	count := envInt("PROMPTMQ_RECOVERY_RETAINED", 0)
	if count == 0 {
		t.Skip("set PROMPTMQ_RECOVERY_RETAINED (for example 1000000) to measure")
	}
	dir := t.TempDir()
	args := durableArgs(dir)
	broker := startBroker(t, "127.0.0.1:0", args...)
	addr := broker.addr
	start := time.Now()
	fillRetained(t, addr, count)
	t.Logf("filled %d retained messages in %v", count, time.Since(start).Round(time.Millisecond))
	if err := broker.stop(); err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 3; round++ {
		started := time.Now()
		broker = startBroker(t, addr, args...)
		listening := time.Since(started)
		line, _ := broker.waitLog("persist: recovered", time.Second)
		var rec struct {
			Retained int
			Took     time.Duration
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("recovery line %q: %v", line, err)
		}
		t.Logf("restart %d: recovered %d retained in %v (persist's count); listening %v after the process started",
			round, rec.Retained, rec.Took.Round(time.Millisecond), listening.Round(time.Millisecond))
		if rec.Retained != count {
			t.Errorf("recovered %d retained, want %d", rec.Retained, count)
		}
		if err := broker.stop(); err != nil {
			t.Fatal(err)
		}
	}
}
