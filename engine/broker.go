// Package engine is the broker: listeners, one reader and one writer per connection,
// CONNECT and session takeover, routing of each PUBLISH to its recipients, retained
// messages, wills, keep-alive, limits and graceful shutdown. Protocol state lives in
// package session, the wire format in packets, the subscription trie in topics.
//
// Lock order, where two locks meet: Broker.mu, then entry.mu. A goroutine holding an
// entry.mu never takes another entry's lock nor Broker.mu, so delivering to recipients is
// always done with no lock held.
package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/packets"
	"github.com/x0a1b/promptmq/persist"
	"github.com/x0a1b/promptmq/session"
	"github.com/x0a1b/promptmq/topics"
)

// Options are what a broker is built from.
type Options struct {
	Config conf.Config
	Logger *slog.Logger
}

// Broker is one running MQTT server.
type Broker struct {
	cfg      conf.Config
	log      *slog.Logger
	router   *topics.Router
	retained *topics.Retained[*session.Message]
	messages session.MessagePool
	// Buffers and decode targets live in pools while bytes move, never with an idle
	// connection (DESIGN.md, Concurrency: the bar is 4 KB per idle connection).
	readBuffers  *packets.BufferPool
	writeBuffers sync.Pool // of *[]byte
	packets      sync.Pool // of *packets.Packet
	works        sync.Pool // of *durableWork (store.go)
	store        *persist.Store
	// durable is whether the store writes to disk (storage.data-dir is set).
	durable  bool
	registry registry
	stats    Stats
	tel      telemetryState
	// memory counts the bytes queued in every session, bounded by mqtt.max-memory.
	memory      atomic.Int64
	connections atomic.Int64
	limits      session.Limits
	online      func(key uint64) bool
	// guard is the access policy and TLS settings, which Reload swaps (auth.go).
	guard guard
	// cluster is nil on a single node; set by AttachCluster before any connection (cluster.go).
	cluster Cluster
	cs      *clusterState

	mu        sync.Mutex // guards the fields below
	sessions  map[string]*entry
	clients   map[*client]struct{}
	listeners []net.Listener
	closing   bool

	conns sync.WaitGroup // one per connection, from accept to its end (parked included)

	// poller and the sweeper park idle connections without a goroutine (poll_idle.go); nil
	// poller: every connection keeps its reader goroutine.
	poller *idlePoller
	// order numbers the bytes of idle readers in arrival order (order.go); nil: unordered.
	order    *orderSet
	idleStop chan struct{}
	idleDone sync.WaitGroup
	// parkedSinceRelease counts parks since the sweeper last gave memory back.
	parkedSinceRelease atomic.Int64
	lastRelease        atomic.Int64 // unix ns of the sweeper's last release
	// parkNotify, when set (by tests, before Serve), receives each client that parked.
	parkNotify chan *client
	// workers serve connections on goroutines whose stacks have grown (workers.go).
	workers *workers
}

// entry is a session as the broker holds it: the protocol state, the connection attached to
// it (nil while offline) and its timers. mu guards every field but key and online.
type entry struct {
	mu     sync.Mutex
	key    uint64
	s      *session.Session
	client *client
	online atomic.Bool
	// durable: the store keeps this session (its expiry interval is above zero).
	durable     atomic.Bool
	expiresAt   int64 // unix ns the session ends while offline; 0 never or while connected
	pendingWill *session.Will
	willTimer   *time.Timer
	expiryTimer *time.Timer
	ended       bool

	// spill holds the state of stored deliveries waiting outside the memory queue (spill.go).
	spill spillState

	// identity is who the session's last connection authenticated as, for the ACL.
	identity identityRef
}

// New builds a broker from a validated configuration.
func New(opts Options) (*Broker, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Broker{
		cfg:      opts.Config,
		log:      opts.Logger,
		router:   topics.NewRouter(topics.Limits{}),
		retained: topics.NewRetained[*session.Message](),
		sessions: make(map[string]*entry),
		clients:  make(map[*client]struct{}),
	}
	b.workers = newWorkers()
	b.limits = session.Limits{
		MaxQueuedMessages: b.cfg.MQTT.MaxQueuedMessages,
		MaxQueuedBytes:    b.cfg.MQTT.MaxQueuedBytes,
		QueueQoS0:         b.cfg.MQTT.QueueQoS0,
		Memory:            &b.memory,
		Dropped:           b.stats.dropped,
	}
	b.online = func(key uint64) bool {
		e := b.registry.get(key)
		return e != nil && e.online.Load()
	}
	if err := b.guard.load(&b.cfg); err != nil {
		return nil, err
	}
	b.readBuffers = packets.NewBufferPool(b.cfg.Server.ReadBuffer)
	writeSize := max(b.cfg.Server.WriteBuffer, 512)
	b.writeBuffers.New = func() any {
		buf := make([]byte, 0, writeSize)
		return &buf
	}
	b.packets.New = func() any { return new(packets.Packet) }
	// Recovery runs before any listener opens (DESIGN.md, Durable state).
	if err := b.openStore(); err != nil {
		return nil, err
	}
	return b, nil
}

// Stats returns the broker's counters (read with atomic loads).
func (b *Broker) Stats() *Stats { return &b.stats }

// Listen opens the TCP listener of server.bind. It is separate from Serve so a caller (or a
// test binding port 0) can learn the address first.
func (b *Broker) Listen() error {
	ln, err := listenTCP(b.cfg.Server.Bind)
	if err != nil {
		return fmt.Errorf("listen on server.bind %s: %w", b.cfg.Server.Bind, err)
	}
	b.mu.Lock()
	b.listeners = append(b.listeners, ln)
	b.mu.Unlock()
	b.openPoller()
	if err := b.listenTransports(); err != nil {
		b.closeListeners()
		b.stopPoller()
		return err
	}
	return nil
}

// Addrs returns the addresses the broker listens on.
func (b *Broker) Addrs() []net.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	addrs := make([]net.Addr, len(b.listeners))
	for i, ln := range b.listeners {
		addrs[i] = ln.Addr()
	}
	return addrs
}

// Serve accepts connections until ctx is cancelled, then shuts down gracefully: every 5.0
// client gets DISCONNECT 0x8B and every connection is flushed before Serve returns.
func (b *Broker) Serve(ctx context.Context) error {
	b.mu.Lock()
	if len(b.listeners) == 0 {
		b.mu.Unlock()
		if err := b.Listen(); err != nil {
			return err
		}
		b.mu.Lock()
	}
	lns := append([]net.Listener(nil), b.listeners...)
	b.mu.Unlock()
	b.startIdle()
	var accepting sync.WaitGroup
	for _, ln := range lns {
		accepting.Add(1)
		go func() {
			defer accepting.Done()
			b.acceptLoop(ln)
		}()
	}
	b.startSys()
	b.workers.startTrim()
	<-ctx.Done()
	b.shutdown()
	accepting.Wait()
	return nil
}

func (b *Broker) acceptLoop(ln net.Listener) {
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait a little, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			b.log.Warn("accept failed", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		b.mu.Lock()
		if b.closing {
			b.mu.Unlock()
			conn.Close()
			continue
		}
		// Registered before CONNECT, so shutdown also closes a socket still silent: it
		// would otherwise hold Serve for the whole connect-timeout.
		c := newClient(b, conn)
		b.clients[c] = struct{}{}
		b.conns.Add(1)
		b.mu.Unlock()
		b.stats.Accepted.Add(1)
		b.workers.start(workItem{c: c})
	}
}

func (b *Broker) shutdown() {
	b.stopSys()
	b.stopSweeper()
	b.mu.Lock()
	b.closing = true
	for _, ln := range b.listeners {
		ln.Close()
	}
	clients := make([]*client, 0, len(b.clients))
	for c := range b.clients {
		clients = append(clients, c)
	}
	b.mu.Unlock()
	for _, c := range clients {
		c.kick(packets.ServerShuttingDown)
	}
	b.conns.Wait()
	b.workers.close()
	b.stopPoller()
	b.mu.Lock()
	for _, e := range b.sessions {
		e.mu.Lock()
		if e.willTimer != nil {
			e.willTimer.Stop()
		}
		if e.expiryTimer != nil {
			e.expiryTimer.Stop()
		}
		e.mu.Unlock()
	}
	b.mu.Unlock()
	if b.cluster != nil {
		// The wills above went to the other nodes; nothing may come in from them once the
		// store closes.
		b.cluster.Leave()
	}
	// Last: wills published during shutdown have been submitted, and Close waits for the
	// writer to commit everything queued.
	if err := b.store.Close(); err != nil {
		b.log.Error("persist: close failed", "err", err)
	}
}

// Shutdown is for callers that used Listen and Serve with a context they cannot cancel.
func (b *Broker) Shutdown() { b.shutdown() }

// assignClientID makes a Client Identifier for a 5.0 client that sent none [MQTT-3.1.3-6].
func assignClientID() string {
	var raw [12]byte
	_, _ = rand.Read(raw[:])
	return "promptmq-" + hex.EncodeToString(raw[:])
}

// now is the broker's clock in unix nanoseconds.
func now() int64 { return time.Now().UnixNano() }
