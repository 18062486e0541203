package main

import (
	"fmt"
	"net"
	"time"

	"github.com/x0a1b/promptmq/packets"
)

// session is one MQTT connection after a successful CONNECT: the socket,
// the Reader that framed the CONNACK (it may already hold bytes read ahead,
// so it must be kept), and what the broker granted.
type session struct {
	conn    net.Conn
	reader  *packets.Reader
	version byte
	// receiveMaximum is the broker's limit on our unacknowledged QoS 1/2
	// publishes: its CONNACK property in 5.0, unlimited (65535) in 3.1.1.
	receiveMaximum int
}

// dialer opens connections, spreading them over several loopback source
// addresses when the target is local, since one source address has only
// about 28,000 ephemeral ports (ip_local_port_range) towards one port.
type dialer struct {
	target  string
	sources []net.IP
	next    int
}

func newDialer(target string, sources int) *dialer {
	d := &dialer{target: target}
	host, _, err := net.SplitHostPort(target)
	if err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() && ip.To4() != nil {
			for i := range sources {
				d.sources = append(d.sources, net.IPv4(127, 0, 0, byte(1+i)))
			}
		}
	}
	return d
}

// dial connects from the next source address; it is not safe for
// concurrent use (workers each own a dialer).
func (d *dialer) dial() (net.Conn, error) {
	nd := net.Dialer{Timeout: 10 * time.Second}
	if len(d.sources) > 0 {
		nd.LocalAddr = &net.TCPAddr{IP: d.sources[d.next%len(d.sources)]}
		d.next++
	}
	conn, err := nd.Dial("tcp", d.target)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", d.target, err)
	}
	return conn, nil
}

// connectOptions are what a CONNECT of this tool varies.
type connectOptions struct {
	version   byte
	clientID  string
	keepAlive uint16
	readSize  int // read-ahead buffer of the session's Reader
}

// handshake sends CONNECT and waits for a successful CONNACK.
func handshake(conn net.Conn, o connectOptions) (*session, error) {
	c := packets.Connect{
		Version:    o.version,
		CleanStart: true,
		KeepAlive:  o.keepAlive,
		ClientID:   []byte(o.clientID),
	}
	if _, err := conn.Write(c.Append(nil)); err != nil {
		return nil, fmt.Errorf("CONNECT of %s: %w", o.clientID, err)
	}
	r := packets.NewReader(conn, o.readSize)
	r.SetVersion(o.version)
	fh, body, err := r.ReadPacket()
	if err != nil {
		return nil, fmt.Errorf("CONNACK of %s: %w", o.clientID, err)
	}
	if fh.Type != packets.TypeConnack {
		return nil, fmt.Errorf("CONNACK of %s: got %s", o.clientID, fh.Type)
	}
	var ack packets.Connack
	if err := ack.Decode(o.version, fh.Flags, body); err != nil {
		return nil, fmt.Errorf("CONNACK of %s: %w", o.clientID, err)
	}
	if ack.Reason.IsError() {
		return nil, fmt.Errorf("CONNACK of %s: refused: %s", o.clientID, ack.Reason)
	}
	s := &session{conn: conn, reader: r, version: o.version, receiveMaximum: 65535}
	if ack.Properties.Has(packets.PropReceiveMaximum) {
		s.receiveMaximum = int(ack.Properties.ReceiveMaximum)
	}
	return s, nil
}

// subscribe subscribes to one filter and waits for its SUBACK.
func (s *session) subscribe(filter string, qos byte) error {
	sub := packets.Subscribe{
		Version:       s.version,
		PacketID:      1,
		Subscriptions: []packets.Subscription{{Filter: []byte(filter), QoS: qos}},
	}
	if _, err := s.conn.Write(sub.Append(nil)); err != nil {
		return fmt.Errorf("SUBSCRIBE %s: %w", filter, err)
	}
	fh, body, err := s.reader.ReadPacket()
	if err != nil {
		return fmt.Errorf("SUBACK %s: %w", filter, err)
	}
	if fh.Type != packets.TypeSuback {
		return fmt.Errorf("SUBACK %s: got %s", filter, fh.Type)
	}
	var ack packets.Suback
	if err := ack.Decode(s.version, fh.Flags, body); err != nil {
		return fmt.Errorf("SUBACK %s: %w", filter, err)
	}
	if len(ack.Reasons) != 1 || ack.Reasons[0].IsError() {
		return fmt.Errorf("SUBACK %s: refused: %v", filter, ack.Reasons)
	}
	return nil
}

// disconnect sends DISCONNECT and closes the socket.
func (s *session) disconnect() {
	d := packets.Disconnect{Version: s.version}
	_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = s.conn.Write(d.Append(nil))
	_ = s.conn.Close()
}
