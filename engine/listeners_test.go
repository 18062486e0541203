package engine

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/paho"

	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/packets"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	pemPath string
	pool    *x509.CertPool
}

func newTestCA(t testing.TB, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, pemPath: filepath.Join(dir, name+".pem"), pool: x509.NewCertPool()}
	ca.pool.AddCert(cert)
	writePEM(t, ca.pemPath, "CERTIFICATE", der)
	return ca
}

func writePEM(t testing.TB, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue signs a leaf certificate: a server's for 127.0.0.1 and localhost, or a client's
// named cn. It returns the certificate and key files and the tls.Certificate.
func (ca *testCA) issue(t testing.TB, dir, cn string, server bool) (certPath, keyPath string, pair tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, cn+".crt"), filepath.Join(dir, cn+".key")
	writePEM(t, certPath, "CERTIFICATE", der)
	writePEM(t, keyPath, "PRIVATE KEY", keyDER)
	pair, err = tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath, pair
}

// pki is a server CA with the broker's certificate and a client CA.
type pki struct {
	dir               string
	server, clients   *testCA
	certFile, keyFile string
}

func newPKI(t testing.TB) *pki {
	dir := t.TempDir()
	p := &pki{dir: dir, server: newTestCA(t, dir, "server-ca"), clients: newTestCA(t, dir, "client-ca")}
	p.certFile, p.keyFile, _ = p.server.issue(t, dir, "broker", true)
	return p
}

// tlsBroker starts a broker with every transport on loopback ports and returns the
// addresses by scheme.
func tlsBroker(t testing.TB, p *pki, edit func(*conf.Config)) (*Broker, map[string]string) {
	b, _ := testBroker(t, func(c *conf.Config) {
		c.Server.TLSBind, c.Server.WSBind, c.Server.WSSBind = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		c.TLS.CertFile, c.TLS.KeyFile = p.certFile, p.keyFile
		if edit != nil {
			edit(c)
		}
	})
	addrs := b.Addrs()
	if len(addrs) != 4 {
		t.Fatalf("listening on %v, want 4 addresses", addrs)
	}
	return b, map[string]string{"tcp": addrs[0].String(), "tls": addrs[1].String(), "ws": addrs[2].String(), "wss": addrs[3].String()}
}

func (p *pki) clientTLS(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: p.server.pool, ServerName: "127.0.0.1", Certificates: certs}
}

// dialWS opens MQTT over WebSocket (wss when tlsConfig is set) as a net.Conn.
func dialWS(t testing.TB, addr string, tlsConfig *tls.Config, subprotocols ...string) (net.Conn, error) {
	scheme := "ws"
	client := http.DefaultClient
	if tlsConfig != nil {
		scheme = "wss"
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	}
	if subprotocols == nil {
		subprotocols = []string{"mqtt"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, scheme+"://"+addr+"/mqtt", &websocket.DialOptions{HTTPClient: client, Subprotocols: subprotocols})
	if err != nil {
		return nil, err
	}
	conn := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	t.Cleanup(func() { conn.Close() })
	return conn, nil
}

// viaTCP hands paho.golang a loopback TCP socket whose bytes are relayed to and from conn.
// paho.golang writes one packet in several Write calls (net.Buffers), which is one writev
// on a *net.TCPConn but separate writes on any other net.Conn, and its pinger and ack
// goroutines then interleave packets mid-way (seen as PINGREQ bytes inside a SUBSCRIBE).
// Over TCP each packet stays whole, and the relay keeps the order.
func viaTCP(t testing.TB, conn net.Conn) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	relay, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	go func() { io.Copy(conn, relay); conn.Close() }()
	go func() { io.Copy(relay, conn); relay.Close() }()
	t.Cleanup(func() { client.Close(); relay.Close(); conn.Close() })
	return client
}

// pahoOver runs a paho.golang client over conn: subscribe, publish to itself, receive.
func pahoOver(t *testing.T, conn net.Conn, id string) {
	t.Helper()
	conn = viaTCP(t, conn)
	r := newReceived()
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){r.handler}})
	ca, err := c.Connect(ctx5(t), &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("%s connect: %v %+v", id, err, ca)
	}
	if _, err := c.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "t/" + id, QoS: 1}}}); err != nil {
		t.Fatalf("%s subscribe: %v", id, err)
	}
	if _, err := c.Publish(ctx5(t), &paho.Publish{Topic: "t/" + id, QoS: 1, Payload: []byte("over " + id)}); err != nil {
		t.Fatalf("%s publish: %v", id, err)
	}
	if m := r.next(t); string(m.Payload) != "over "+id {
		t.Errorf("received %q", m.Payload)
	}
	c.Disconnect(&paho.Disconnect{})
}

func TestTransportsWithPaho(t *testing.T) {
	p := newPKI(t)
	_, addrs := tlsBroker(t, p, nil)
	t.Run("tls", func(t *testing.T) {
		conn, err := tls.Dial("tcp", addrs["tls"], p.clientTLS())
		if err != nil {
			t.Fatal(err)
		}
		pahoOver(t, conn, "tls")
	})
	t.Run("ws", func(t *testing.T) {
		conn, err := dialWS(t, addrs["ws"], nil)
		if err != nil {
			t.Fatal(err)
		}
		pahoOver(t, conn, "ws")
	})
	t.Run("wss", func(t *testing.T) {
		conn, err := dialWS(t, addrs["wss"], p.clientTLS())
		if err != nil {
			t.Fatal(err)
		}
		pahoOver(t, conn, "wss")
	})
	t.Run("tls 1.1 refused", func(t *testing.T) {
		cfg := p.clientTLS()
		cfg.MaxVersion = tls.VersionTLS11
		if conn, err := tls.Dial("tcp", addrs["tls"], cfg); err == nil {
			conn.Close()
			t.Error("a TLS 1.1 handshake succeeded")
		}
	})
	t.Run("ws without the mqtt subprotocol", func(t *testing.T) {
		conn, err := dialWS(t, addrs["ws"], nil, "chat")
		if err != nil {
			return // refused at the handshake: fine too
		}
		buf := make([]byte, 1)
		conn.SetReadDeadline(time.Now().Add(rawWait))
		if _, err := conn.Read(buf); err == nil {
			t.Error("a WebSocket without the mqtt subprotocol stayed open")
		}
	})
}

// TestWebSocketFraming: a packet split over several binary messages and several packets in
// one message are both read; MQTT is a byte stream over WebSocket [MQTT-6.0.0-2].
func TestWebSocketFraming(t *testing.T) {
	p := newPKI(t)
	_, addrs := tlsBroker(t, p, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+addrs["ws"]+"/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	connect := (&packets.Connect{Version: packets.V311, CleanStart: true, KeepAlive: 30, ClientID: []byte("frames")}).Append(nil)
	// CONNECT in three messages, the last one a single byte.
	for _, part := range [][]byte{connect[:1], connect[1 : len(connect)-1], connect[len(connect)-1:]} {
		if err := ws.Write(ctx, websocket.MessageBinary, part); err != nil {
			t.Fatal(err)
		}
	}
	// SUBSCRIBE, PUBLISH and PINGREQ in one message.
	var batch []byte
	batch = (&packets.Subscribe{Version: packets.V311, PacketID: 1, Subscriptions: []packets.Subscription{sub("f/#", 0)}}).Append(batch)
	batch = (&packets.Publish{Version: packets.V311, Topic: []byte("f/x"), Payload: []byte("in one frame")}).Append(batch)
	batch = packets.AppendPingreq(batch)
	if err := ws.Write(ctx, websocket.MessageBinary, batch); err != nil {
		t.Fatal(err)
	}
	conn := websocket.NetConn(ctx, ws, websocket.MessageBinary)
	r := &rawClient{t: t, conn: conn, r: packets.NewReader(conn, 4096), version: packets.V311}
	if ca := r.expect(packets.TypeConnack).Connack; ca.Reason != packets.Success {
		t.Fatalf("CONNACK %v", ca.Reason)
	}
	r.expect(packets.TypeSuback)
	var sawPublish, sawPong bool
	for !(sawPublish && sawPong) {
		typ, err := r.readPacket(rawWait)
		if err != nil {
			t.Fatal(err)
		}
		switch typ {
		case packets.TypePublish:
			sawPublish = string(r.pkt.Publish.Payload) == "in one frame"
		case packets.TypePingresp:
			sawPong = true
		}
	}
}

func TestClientCertificates(t *testing.T) {
	p := newPKI(t)
	_, _, alice := p.clients.issue(t, p.dir, "alice", false)
	stranger := newTestCA(t, p.dir, "other-ca")
	_, _, mallory := stranger.issue(t, p.dir, "mallory", false)
	acl := writeFile(t, "acl", "user alice\ntopic readwrite alice/#\n")
	_, addrs := tlsBroker(t, p, func(c *conf.Config) {
		c.TLS.ClientCAFile = p.clients.pemPath
		c.TLS.RequireClientCert = true
		c.TLS.UseIdentityAsUsername = true
		c.Auth.ACLFile = acl
		c.Auth.AllowAnonymous = false
	})
	dial := func(certs ...tls.Certificate) (*rawClient, error) {
		conn, err := tls.Dial("tcp", addrs["tls"], p.clientTLS(certs...))
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { conn.Close() })
		return &rawClient{t: t, conn: conn, r: packets.NewReader(conn, 4096), version: packets.V5}, nil
	}
	t.Run("accepted, CN is the user", func(t *testing.T) {
		c, err := dial(alice)
		if err != nil {
			t.Fatal(err)
		}
		// The CONNECT's own user name is ignored: the certificate names the user.
		c.mustConnect("cert-alice", loginAs("bob"))
		if got := c.subscribe(1, 0, sub("alice/#", 1), sub("bob/#", 1)); got[0] != 1 || got[1] != packets.NotAuthorized {
			t.Errorf("SUBACK %v: the ACL of alice should apply", got)
		}
	})
	for name, certs := range map[string][]tls.Certificate{"no certificate": nil, "certificate of another CA": {mallory}} {
		t.Run("refused: "+name, func(t *testing.T) {
			c, err := dial(certs...)
			if err != nil {
				return // TLS 1.2 fails in the handshake
			}
			// TLS 1.3 sends the client certificate after the client's handshake ends: the
			// refusal arrives on the first read.
			c.send(&packets.Connect{Version: packets.V5, CleanStart: true, ClientID: []byte("x")})
			if _, err := c.readPacket(rawWait); err == nil {
				t.Error("connection without a valid client certificate got a CONNACK")
			}
		})
	}
	t.Run("wss with a client certificate", func(t *testing.T) {
		conn, err := dialWS(t, addrs["wss"], p.clientTLS(alice))
		if err != nil {
			t.Fatal(err)
		}
		c := &rawClient{t: t, conn: conn, r: packets.NewReader(conn, 4096), version: packets.V5}
		c.mustConnect("wss-alice", nil)
		if got := c.subscribe(1, 0, sub("alice/x", 0)); got[0] != 0 {
			t.Errorf("SUBACK %v", got)
		}
	})
}

// TestCertificateNotVerifiedNamesNobody: without require-client-cert, a client with no
// certificate gets no identity and is refused when anonymous access is off.
func TestCertificateOptional(t *testing.T) {
	p := newPKI(t)
	_, _, alice := p.clients.issue(t, p.dir, "alice", false)
	_, addrs := tlsBroker(t, p, func(c *conf.Config) {
		c.TLS.ClientCAFile = p.clients.pemPath
		c.TLS.UseIdentityAsUsername = true
		c.Auth.AllowAnonymous = false
	})
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		want  packets.ReasonCode
	}{
		{"with certificate", []tls.Certificate{alice}, packets.Success},
		{"without", nil, packets.NotAuthorized},
	} {
		conn, err := tls.Dial("tcp", addrs["tls"], p.clientTLS(tc.certs...))
		if err != nil {
			t.Fatal(err)
		}
		c := &rawClient{t: t, conn: conn, r: packets.NewReader(conn, 4096), version: packets.V5}
		if got := c.connect(&packets.Connect{CleanStart: true, ClientID: []byte("opt")}).Reason; got != tc.want {
			t.Errorf("%s: CONNACK %v, want %v", tc.name, got, tc.want)
		}
		conn.Close()
	}
}

// TestReloadCertificate: after Reload, new handshakes present the new certificate while a
// connection made before stays up.
func TestReloadCertificate(t *testing.T) {
	p := newPKI(t)
	var cfg conf.Config
	b, addrs := tlsBroker(t, p, func(c *conf.Config) { cfg = *c })
	conn, err := tls.Dial("tcp", addrs["tls"], p.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	before := &rawClient{t: t, conn: conn, r: packets.NewReader(conn, 4096), version: packets.V5}
	before.mustConnect("before", nil)

	other := newTestCA(t, p.dir, "new-server-ca")
	cfg.TLS.CertFile, cfg.TLS.KeyFile, _ = other.issue(t, p.dir, "broker2", true)
	if err := b.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if c, err := tls.Dial("tcp", addrs["tls"], p.clientTLS()); err == nil {
		c.Close()
		t.Error("the old CA still verifies the broker after the certificate changed")
	}
	newClient := &tls.Config{RootCAs: other.pool, ServerName: "127.0.0.1"}
	c, err := tls.Dial("tcp", addrs["tls"], newClient)
	if err != nil {
		t.Fatalf("handshake with the new certificate: %v", err)
	}
	c.Close()
	before.ping()

	cfg.TLS.KeyFile = filepath.Join(p.dir, "missing.key")
	if err := b.Reload(cfg); err == nil {
		t.Error("reload with a missing key succeeded")
	}
	if c, err := tls.Dial("tcp", addrs["tls"], newClient); err != nil {
		t.Errorf("a failed reload changed the certificate: %v", err)
	} else {
		c.Close()
	}
}

func TestListenErrors(t *testing.T) {
	p := newPKI(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, field := range []string{"tls", "ws", "wss"} {
		cfg := conf.Default()
		cfg.Server.Bind = "127.0.0.1:0"
		cfg.Storage.DataDir = ""
		cfg.TLS.CertFile, cfg.TLS.KeyFile = p.certFile, p.keyFile
		switch field {
		case "tls":
			cfg.Server.TLSBind = busy.Addr().String()
		case "ws":
			cfg.Server.WSBind = busy.Addr().String()
		case "wss":
			cfg.Server.WSSBind = busy.Addr().String()
		}
		b, err := New(Options{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Listen(); err == nil {
			t.Errorf("%s: Listen on a busy port succeeded", field)
			b.Shutdown()
		}
		if n := len(b.Addrs()); n != 0 {
			t.Errorf("%s: %d listeners left open after a failed Listen", field, n)
		}
	}
	cfg := conf.Default()
	cfg.Storage.DataDir = ""
	cfg.TLS.CertFile, cfg.TLS.KeyFile = p.keyFile, p.certFile // swapped
	if _, err := New(Options{Config: cfg}); err == nil {
		t.Error("New accepted a bad key pair")
	}
	cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile = p.certFile, p.keyFile, p.keyFile // not a certificate
	if _, err := New(Options{Config: cfg}); err == nil {
		t.Error("New accepted a client CA file without certificates")
	}
}
