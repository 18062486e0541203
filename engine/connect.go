package engine

import (
	"errors"
	"time"

	"github.com/x0a1b/promptmq/packets"
	"github.com/x0a1b/promptmq/session"
)

// connect reads and answers CONNECT. It returns whether the connection continues, attached
// to c.e, with CONNACK (and any resent inflight messages) queued for the writer.
//
// Its frame, and those of the functions it calls, stay small: a goroutine starts with a
// 2 KB stack, and a CONNECT path that outgrew it cost a stack copy per connection (5% of
// the connection-rate profile). Packet structs (a Connack or Publish is 330-380 bytes)
// therefore live in the frames of small non-inlined helpers, one at a time.
func (c *client) connect() (sessionPresent bool, ok bool) {
	p := c.readConnect()
	if p == nil {
		return false, false
	}
	defer c.releasePacket() // everything kept of CONNECT is copied out
	c.version = p.Version
	// From here on a 5.0 remaining length must be minimal [MQTT-1.5.5-1].
	c.reader.SetVersion(c.version)

	if p.Properties.Has(packets.PropAuthMethod) {
		// No enhanced authentication method is supported [MQTT-4.12.0-1].
		c.refuse(c.version, packets.BadAuthenticationMethod)
		return false, false
	}
	if max := c.b.cfg.MQTT.MaxConnections; max > 0 && c.b.connections.Load() >= int64(max) {
		c.refuse(c.version, packets.QuotaExceeded)
		return false, false
	}

	var ack connackFacts
	id := string(p.ClientID)
	if id == "" {
		switch {
		case c.version == packets.V5:
			id = assignClientID() // [MQTT-3.1.3-6]
			ack.assignedID = true
		case c.version == packets.V311 && p.CleanStart:
			id = assignClientID() // [MQTT-3.1.3-6]
		default:
			c.refuse(c.version, packets.ClientIdentifierNotValid) // [MQTT-3.1.3-8]
			return false, false
		}
	}
	c.id = id
	if !c.authenticate(p) {
		return false, false
	}

	// Keep alive: a request above mqtt.keep-alive gets Server Keep Alive [MQTT-3.2.2-21].
	keepAlive := int(p.KeepAlive)
	if max := c.b.cfg.MQTT.KeepAlive; max > 0 && max < 65535 && keepAlive > max && c.version == packets.V5 {
		keepAlive = max
		ack.serverKeepAlive = true
	}
	c.keepAlive = time.Duration(keepAlive) * time.Second

	expiry := uint32(0)
	if c.version == packets.V5 {
		if p.Properties.Has(packets.PropSessionExpiry) {
			expiry = p.Properties.SessionExpiry
		}
	} else if !p.CleanStart {
		expiry = 0xFFFFFFFF // a 3.x persistent session lasts until clean session 1
	}
	if max := uint32(c.b.cfg.MQTT.MaxSessionExpiry / time.Second); max > 0 && expiry > max {
		expiry = max
		ack.expiryCapped = c.version == packets.V5
	}
	sendQuota := 65535
	if p.Properties.Has(packets.PropReceiveMaximum) {
		sendQuota = int(p.Properties.ReceiveMaximum)
	}
	maxPacket := 0
	if p.Properties.Has(packets.PropMaximumPacketSize) {
		maxPacket = int(p.Properties.MaximumPacketSize)
	}
	topicAliasMax := uint16(0)
	if p.Properties.Has(packets.PropTopicAliasMaximum) {
		topicAliasMax = p.Properties.TopicAliasMaximum
	}
	if p.Properties.Has(packets.PropRequestProblemInfo) {
		c.requestProblemInfo = p.Properties.RequestProblemInfo == 1
	}

	var will *session.Will
	if p.WillFlag {
		var refused packets.ReasonCode
		if will, refused = c.newWill(p); will == nil {
			c.refuse(c.version, refused)
			return false, false
		}
	}

	if c.b.cluster != nil {
		c.b.claimSession(id, p.CleanStart) // a session live or kept on another node comes here
	}
	c.b.connections.Add(1)
	e, present, ok := c.b.attach(c, id, p.CleanStart, expiry, will)
	if !ok {
		c.b.connections.Add(-1)
		c.refuse(c.version, packets.ServerUnavailable)
		return false, false
	}
	if e.durable.Load() && !c.awaitStore() {
		// The session row did not commit: a CONNACK would promise a session that a restart
		// forgets. Gone as after a DISCONNECT (no will); the client may try again.
		c.b.detach(c, true)
		c.refuse(c.version, packets.ServerUnavailable)
		return false, false
	}
	if c.version != packets.V5 && p.CleanStart {
		present = false
	}
	e.identity.Store(&c.who)
	c.aliases.Maximum = uint16(c.b.cfg.MQTT.MaxTopicAlias)

	e.mu.Lock()
	e.s.SendQuota = sendQuota
	c.maxPacketSize = maxPacket
	c.outAliases.Reset(topicAliasMax)
	c.appendConnack(present, &ack, expiry)
	if e.s.HasInflight() {
		c.resend(e)
	}
	e.mu.Unlock()
	return present, true
}

// readConnect reads the first packet, which must be a valid CONNECT [MQTT-3.1.0-1]. It
// returns nil when the connection should end (refused with a CONNACK where the client can
// understand one).
//
//go:noinline
func (c *client) readConnect() *packets.Connect {
	if t := c.b.cfg.Server.ConnectTimeout; t > 0 && c.src.socket == nil {
		// A plain TCP socket sets it only if its first read must wait (readOnce): a
		// client's CONNECT is usually there when the connection is accepted.
		c.conn.SetReadDeadline(time.Now().Add(t))
	}
	fh, body, err := c.reader.ReadPacket()
	if err != nil {
		c.logNoConnect(err)
		return nil
	}
	if fh.Type != packets.TypeConnect {
		return nil // [MQTT-3.1.0-1]
	}
	c.b.stats.PacketsReceivedByType[packets.TypeConnect].Add(1)
	// The connect timeout's deadline stays until serve replaces it with the keep-alive's
	// (startReadDeadline): nothing reads in between, and each change is a timer operation.
	p := &c.pk().Connect
	if err := p.Decode(body); err != nil {
		c.badConnect(p.Version, err)
		c.releasePacket()
		return nil
	}
	return p
}

//go:noinline
func (c *client) logNoConnect(err error) {
	c.log.Debug("no CONNECT", "remote", c.conn.RemoteAddr().String(), "err", err)
}

// badConnect refuses a CONNECT that does not decode, with its reason code.
//
//go:noinline
func (c *client) badConnect(version byte, err error) {
	var perr *packets.Error
	code := packets.MalformedPacket
	if errors.As(err, &perr) {
		code = perr.Code
	}
	c.log.Debug("bad CONNECT", "remote", c.conn.RemoteAddr().String(), "err", err)
	c.refuse(version, code)
}

// connackFacts are what the negotiation decided that a 5.0 CONNACK must state.
type connackFacts struct {
	assignedID      bool // the broker assigned the Client Identifier (c.id)
	serverKeepAlive bool // mqtt.keep-alive capped the client's keep-alive
	expiryCapped    bool // mqtt.max-session-expiry capped the session expiry interval
}

// appendConnack queues the success CONNACK. The caller holds c.e.mu.
//
//go:noinline
func (c *client) appendConnack(present bool, f *connackFacts, expiry uint32) {
	// The pooled packet's Connack, not one on the stack: 330 bytes more in this frame made
	// the CONNECT path outgrow the initial stack.
	connack := &c.pk().Connack
	*connack = packets.Connack{}
	connack.Version = c.version
	connack.SessionPresent = present // [MQTT-3.2.2-2] [MQTT-3.2.2-3]
	connack.Reason = packets.Success
	if c.version == packets.V5 {
		props := &connack.Properties
		if f.assignedID {
			props.Set(packets.PropAssignedClientID)
			props.AssignedClientID = []byte(c.id)
		}
		if f.serverKeepAlive {
			props.Set(packets.PropServerKeepAlive) // [MQTT-3.2.2-21]
			props.ServerKeepAlive = uint16(c.keepAlive / time.Second)
		}
		if f.expiryCapped {
			props.Set(packets.PropSessionExpiry)
			props.SessionExpiry = expiry
		}
		c.addConnackProperties(props)
	}
	// Encoded on the stack first: appending to an empty c.ctrl grew it twice.
	var buf [64]byte
	c.ctrl = append(c.ctrl, connack.Append(buf[:0])...)
}

// resend queues the session's unacknowledged messages again, with DUP, before anything new
// [MQTT-4.4.0-1]. The caller holds e.mu.
//
//go:noinline
func (c *client) resend(e *entry) {
	var tooLarge []uint16
	t := now()
	e.s.Resend(func(o *session.Outgoing) {
		if o.Released {
			c.queueAck(&packets.Ack{Type: packets.TypePubrel, Version: c.version, PacketID: o.PacketID})
			return
		}
		start := len(c.ctrl)
		c.ctrl = session.AppendPublish(c.ctrl, new(packets.Publish), c.version, o, t, 0, false)
		if c.maxPacketSize > 0 && len(c.ctrl)-start > c.maxPacketSize {
			c.ctrl = c.ctrl[:start]
			tooLarge = append(tooLarge, o.PacketID)
		}
	})
	for _, id := range tooLarge {
		e.s.DropInflight(id)
		c.b.stats.dropped(session.DropTooLarge, 1)
	}
}

// newWill builds the will of a CONNECT, or returns nil and the reason to refuse it.
//
//go:noinline
func (c *client) newWill(p *packets.Connect) (*session.Will, packets.ReasonCode) {
	if p.WillQoS > byte(c.b.cfg.MQTT.MaxQoS) {
		return nil, packets.QoSNotSupported // [MQTT-3.2.2-12]
	}
	if p.WillRetain && !c.b.cfg.MQTT.RetainAvailable {
		return nil, packets.RetainNotSupported // [MQTT-3.2.2-13]
	}
	wp := packets.Publish{Version: c.version, QoS: p.WillQoS, Retain: p.WillRetain, Topic: p.WillTopic, Payload: p.WillPayload, Properties: p.WillProperties}
	// Built as of time 0, so Expires holds the will's expiry interval (in ns) until
	// publishWill stamps it: the interval counts from publication, not from CONNECT.
	will := &session.Will{Message: session.NewMessage(&wp, p.WillTopic, 0, 0, c.maxMessageExpiry())}
	if p.WillProperties.Has(packets.PropWillDelay) {
		will.Delay = p.WillProperties.WillDelay
	}
	return will, 0
}

func (c *client) addConnackProperties(props *packets.Properties) {
	m := &c.b.cfg.MQTT
	if m.MaxInflight > 0 && m.MaxInflight < 65535 {
		props.Set(packets.PropReceiveMaximum)
		props.ReceiveMaximum = uint16(m.MaxInflight)
	}
	if m.MaxQoS < 2 {
		props.Set(packets.PropMaximumQoS)
		props.MaximumQoS = byte(m.MaxQoS)
	}
	if !m.RetainAvailable {
		props.Set(packets.PropRetainAvailable)
		props.RetainAvailable = 0
	}
	if m.MaxPacketSize > 0 {
		props.Set(packets.PropMaximumPacketSize)
		props.MaximumPacketSize = uint32(m.MaxPacketSize)
	}
	if m.MaxTopicAlias > 0 {
		props.Set(packets.PropTopicAliasMaximum)
		props.TopicAliasMaximum = uint16(m.MaxTopicAlias)
	}
	if !m.WildcardAvailable {
		props.Set(packets.PropWildcardAvailable)
		props.WildcardAvailable = 0
	}
	if !m.SubscriptionIDAvailable {
		props.Set(packets.PropSubIDAvailable)
		props.SubIDAvailable = 0
	}
	if !m.SharedSubAvailable {
		props.Set(packets.PropSharedSubAvailable)
		props.SharedSubAvailable = 0
	}
}

func (c *client) maxMessageExpiry() uint32 {
	return uint32(c.b.cfg.MQTT.MaxMessageExpiry / time.Second)
}

// refuse answers a CONNECT with an error CONNACK in the client's version and ends the
// connection [MQTT-3.2.2-6]. A 3.x client gets the nearest 3.1.1 return code.
func (c *client) refuse(version byte, code packets.ReasonCode) {
	c.b.stats.disconnect(code)
	var buf []byte
	switch version {
	case packets.V5:
		buf = (&packets.Connack{Version: version, Reason: code}).Append(nil)
	case packets.V31, packets.V311:
		buf = (&packets.Connack{Version: version, Reason: code}).Append(nil) // Append maps the code to 3.x
	default:
		if code != packets.UnsupportedProtocolVersion {
			return // not CONNECT as any version knows it: close without a CONNACK
		}
		if version > packets.V5 {
			// A newer client most likely parses the 5.0 form.
			buf = (&packets.Connack{Version: packets.V5, Reason: code}).Append(nil)
		} else {
			buf = (&packets.Connack{Version: packets.V311, Reason: code}).Append(nil)
		}
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.writeTimeout()))
	c.b.stats.sentPackets(buf)
	n, _ := c.conn.Write(buf)
	c.b.stats.BytesSent.Add(uint64(n))
}
