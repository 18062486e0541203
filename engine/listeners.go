package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/coder/websocket"

	"github.com/x0a1b/promptmq/conf"
)

// listenTCP opens a TCP listener whose accepted connections have no TCP keep-alive. MQTT
// has its own keep-alive [MQTT-3.1.2-22]; Go's default (15 s probes) costs four setsockopt
// calls per accepted connection, about 5% of the broker's CPU in the connection-rate
// benchmark. Mosquitto does not enable it either.
func listenTCP(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", addr)
}

// newTLSConfig builds the TLS settings of the tls-bind and wss-bind listeners: TLS 1.2 or
// newer, the server certificate, and client certificates verified against client-ca-file
// (required with require-client-cert, else checked when offered).
func newTLSConfig(t *conf.TLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert-file/tls.key-file: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.MinVersion == "1.3" {
		cfg.MinVersion = tls.VersionTLS13
	}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.client-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.client-ca-file %s: no PEM certificate in it", t.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if t.RequireClientCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}

// serverTLS is the listeners' TLS configuration: every handshake takes the settings current
// at that moment, so Reload changes certificates without closing the listeners.
func (b *Broker) serverTLS() *tls.Config {
	return &tls.Config{
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return b.guard.tls.Load(), nil
		},
	}
}

// tlsState is implemented by connections that ran a TLS handshake: *tls.Conn and wsConn of
// a WSS listener.
type tlsState interface {
	ConnectionState() tls.ConnectionState
}

// peerCommonName returns the Common Name of the client certificate verified on conn.
// A certificate that was not verified against tls.client-ca-file names nobody.
func peerCommonName(conn net.Conn) (string, bool) {
	s, ok := conn.(tlsState)
	if !ok {
		return "", false
	}
	state := s.ConnectionState()
	if len(state.VerifiedChains) == 0 || len(state.PeerCertificates) == 0 {
		return "", false
	}
	cn := state.PeerCertificates[0].Subject.CommonName
	return cn, cn != ""
}

// listenTransports opens the listeners besides server.bind: TLS, WebSocket and secure
// WebSocket, each when its address is set. They join b.listeners, so accepting and
// shutdown treat every transport alike.
func (b *Broker) listenTransports() error {
	s := &b.cfg.Server
	if s.TLSBind != "" {
		ln, err := listenTCP(s.TLSBind)
		if err != nil {
			return fmt.Errorf("listen on server.tls-bind %s: %w", s.TLSBind, err)
		}
		b.addListener(tls.NewListener(ln, b.serverTLS()))
	}
	if s.WSBind != "" {
		ln, err := listenTCP(s.WSBind)
		if err != nil {
			return fmt.Errorf("listen on server.ws-bind %s: %w", s.WSBind, err)
		}
		b.addListener(b.newWSListener(ln))
	}
	if s.WSSBind != "" {
		ln, err := listenTCP(s.WSSBind)
		if err != nil {
			return fmt.Errorf("listen on server.wss-bind %s: %w", s.WSSBind, err)
		}
		b.addListener(b.newWSListener(tls.NewListener(ln, b.serverTLS())))
	}
	b.warnAnonymous()
	return nil
}

func (b *Broker) addListener(ln net.Listener) {
	b.mu.Lock()
	b.listeners = append(b.listeners, ln)
	b.mu.Unlock()
}

// closeListeners closes what Listen opened before it failed.
func (b *Broker) closeListeners() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ln := range b.listeners {
		ln.Close()
	}
	b.listeners = nil
}

// warnAnonymous says at start when anyone on the network may connect without credentials.
func (b *Broker) warnAnonymous() {
	if !b.cfg.Auth.AllowAnonymous {
		return
	}
	for _, addr := range b.Addrs() {
		if tcp, ok := addr.(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
			b.log.Warn("auth.allow-anonymous is true and a listener is reachable from the network: anyone can connect without credentials",
				"addr", addr.String())
			return
		}
	}
}

// wsListener turns the HTTP server of a WebSocket listener into a net.Listener: each
// upgraded connection comes out of Accept as a wsConn, so the broker's accept loop serves
// MQTT over WebSocket exactly like MQTT over TCP.
type wsListener struct {
	ln        net.Listener
	server    *http.Server
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func (b *Broker) newWSListener(ln net.Listener) *wsListener {
	l := &wsListener{ln: ln, conns: make(chan net.Conn), closed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc(b.cfg.Server.WSPath, func(w http.ResponseWriter, r *http.Request) { b.upgrade(l, w, r) })
	l.server = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: b.cfg.Server.ConnectTimeout,
		ErrorLog:          log.New(slogWriter{b.log}, "", 0),
	}
	go l.server.Serve(ln)
	return l
}

// upgrade accepts a WebSocket that offers the subprotocol mqtt [MQTT-6.0.0-3] and answers
// with it [MQTT-6.0.0-4], then hands the connection to Accept.
func (b *Broker) upgrade(l *wsListener, w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: []string{"mqtt"},
		// MQTT authenticates in CONNECT, never with cookies, so a page of another origin
		// gains nothing a script could not do by connecting itself; browsers' MQTT clients
		// are usually served from another origin than the broker.
		InsecureSkipVerify: true,
	})
	if err != nil {
		return // Accept has answered with the HTTP error
	}
	if ws.Subprotocol() != "mqtt" {
		ws.Close(websocket.StatusPolicyViolation, "the WebSocket subprotocol mqtt is required") // [MQTT-6.0.0-3]
		return
	}
	// The connection outlives this handler (it is hijacked), so it must not use r.Context(),
	// which ends when the handler returns.
	conn := &wsConn{Conn: websocket.NetConn(context.Background(), ws, websocket.MessageBinary), tls: r.TLS}
	select {
	case l.conns <- conn:
	case <-l.closed:
		conn.Close()
	}
}

func (l *wsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *wsListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.closed)
		err = l.server.Close()
	})
	return err
}

func (l *wsListener) Addr() net.Addr { return l.ln.Addr() }

// wsConn is one MQTT connection over WebSocket as a byte stream. websocket.NetConn does the
// framing: a Read continues across binary messages (an MQTT packet split over several
// frames) and returns what one message holds in as many Reads as it takes (several packets
// in one frame); each Write is one binary message [MQTT-6.0.0-1]. A text message ends the
// connection [MQTT-6.0.0-1]. wsConn adds the TLS state of a WSS connection, which the
// use-identity-as-username check reads.
type wsConn struct {
	net.Conn
	tls *tls.ConnectionState
}

func (c *wsConn) ConnectionState() tls.ConnectionState {
	if c.tls == nil {
		return tls.ConnectionState{}
	}
	return *c.tls
}

// slogWriter sends net/http's own error lines (bad handshakes and the like) to the broker's
// log at debug level: they are a client's problem, not the broker's.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Debug("websocket listener", "msg", string(p))
	return len(p), nil
}
