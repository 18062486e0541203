package engine

import (
	"context"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/x0a1b/promptmq/conf"
)

// testBroker starts a broker on a loopback port and stops it when the test ends.
func testBroker(t testing.TB, edit func(*conf.Config)) (*Broker, string) {
	t.Helper()
	b := newTestBrokerConfig(t, edit)
	return b, serveTestBroker(t, b)
}

// newTestBrokerConfig is testBroker's broker, not yet serving: a test adjusts what it must
// (a shorter period, a notification channel) before serveTestBroker.
func newTestBrokerConfig(t testing.TB, edit func(*conf.Config)) *Broker {
	t.Helper()
	cfg := conf.Default()
	cfg.Server.Bind = "127.0.0.1:0"
	cfg.Storage.DataDir = ""
	cfg.Metrics.Enabled = false
	if edit != nil {
		edit(&cfg)
	}
	b, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serveTestBroker opens b's listeners, serves until the test ends, and returns the MQTT
// address. Cleanups registered before it run after the broker has stopped.
func serveTestBroker(t testing.TB, b *Broker) string {
	t.Helper()
	if err := b.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Serve(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			buf := make([]byte, 1<<20)
			t.Errorf("broker did not stop:\n%s", buf[:runtime.Stack(buf, true)])
		}
	})
	return b.Addrs()[0].String()
}

// received collects the PUBLISH packets a paho.golang client receives.
type received struct {
	ch chan *paho.Publish
}

func newReceived() *received { return &received{ch: make(chan *paho.Publish, 1024)} }

func (r *received) handler(p paho.PublishReceived) (bool, error) {
	r.ch <- p.Packet
	return true, nil
}

// next waits for the next message or fails the test.
func (r *received) next(t testing.TB) *paho.Publish {
	t.Helper()
	select {
	case p := <-r.ch:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
		return nil
	}
}

// none asserts that no message arrives within a short window. Used only where the
// specification requires that nothing is sent, after a later event proves the pipe drained.
func (r *received) none(t testing.TB, within time.Duration) {
	t.Helper()
	select {
	case p := <-r.ch:
		t.Fatalf("unexpected message on %q: %q", p.Topic, p.Payload)
	case <-time.After(within):
	}
}

// connect5 connects a paho.golang (MQTT 5.0) client.
func connect5(t testing.TB, addr string, cp *paho.Connect, r *received, edit func(*paho.ClientConfig)) (*paho.Client, *paho.Connack) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cfg := paho.ClientConfig{Conn: conn}
	if r != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){r.handler}
	}
	if edit != nil {
		edit(&cfg)
	}
	c := paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		t.Fatalf("connect %q: %v (connack %+v)", cp.ClientID, err, ca)
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	return c, ca
}

func ctx5(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}
