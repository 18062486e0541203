package engine

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/engine/access"
	"github.com/x0a1b/promptmq/packets"
	"github.com/x0a1b/promptmq/topics"
)

// identity is who a connection authenticated as; the ACL is checked against it.
type identity = access.Identity

// identityRef is an entry's identity, read without the entry's lock by route.
type identityRef = atomic.Pointer[access.Identity]

// authFailureDelay slows a client that sent bad credentials before it learns so, which
// bounds how fast one connection can guess passwords.
const authFailureDelay = 500 * time.Millisecond

// guard holds what Reload replaces while clients stay connected: the access policy and the
// TLS settings. Each is an immutable value behind an atomic pointer, so the per-message
// checks take no lock and a failed reload leaves the old values in place.
type guard struct {
	policy atomic.Pointer[access.Policy]
	tls    atomic.Pointer[tls.Config]
	// refusal is the 5.0 SUBACK code for a filter the ACL refuses (auth.subscribe-refusal).
	refusal atomic.Uint32
	// identityFromCert: the user name is a client certificate's Common Name.
	identityFromCert atomic.Bool
}

// load builds every value of cfg before storing any, so a bad file changes nothing.
func (g *guard) load(cfg *conf.Config) error {
	policy, err := access.Load(cfg.Auth.AllowAnonymous, cfg.Auth.PasswordFile, cfg.Auth.ACLFile)
	if err != nil {
		return err
	}
	var tlsConfig *tls.Config
	if cfg.TLS.CertFile != "" {
		if tlsConfig, err = newTLSConfig(&cfg.TLS); err != nil {
			return err
		}
	}
	g.policy.Store(policy)
	if tlsConfig != nil {
		g.tls.Store(tlsConfig)
	}
	refusal := packets.NotAuthorized
	if cfg.Auth.SubscribeRefusal == "unspecified-error" {
		refusal = packets.UnspecifiedError
	}
	g.refusal.Store(uint32(refusal))
	g.identityFromCert.Store(cfg.TLS.UseIdentityAsUsername)
	return nil
}

// subscribeRefusal is the reason code of a subscription the ACL refuses [MQTT-3.9.3-1].
func (g *guard) subscribeRefusal() packets.ReasonCode { return packets.ReasonCode(g.refusal.Load()) }

// Reload re-reads the password file, the ACL file and the TLS certificates of cfg; auth.*
// and tls.* settings take effect for the next check or handshake, connections stay up. If
// anything fails the broker keeps every old setting and the error says why. Listener
// addresses are not reloaded.
func (b *Broker) Reload(cfg conf.Config) error {
	if err := b.guard.load(&cfg); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	p := b.guard.policy.Load()
	b.log.Info("access reloaded", "password_file", cfg.Auth.PasswordFile, "acl_file", cfg.Auth.ACLFile,
		"users", passwordsLen(p), "tls", cfg.TLS.CertFile != "")
	return nil
}

func passwordsLen(p *access.Policy) int {
	if p.Passwords == nil {
		return 0
	}
	return p.Passwords.Len()
}

// authenticate checks the credentials of CONNECT p and the will's topic, and refuses the
// connection when they fail [MQTT-3.1.4-2]. It sets c.who.
func (c *client) authenticate(p *packets.Connect) bool {
	g := &c.b.guard
	policy := g.policy.Load()
	c.who = identity{ClientID: c.id}
	username, hasUsername, trusted := string(p.Username), p.UsernameFlag, false
	if g.identityFromCert.Load() {
		// The certificate is the credential: without one there is no user [MQTT-3.1.4-2].
		username, hasUsername = peerCommonName(c.conn)
		trusted = hasUsername
	}
	var code packets.ReasonCode
	switch policy.Authenticate(username, hasUsername, p.Password, trusted) {
	case access.BadCredentials:
		code = packets.BadUserNameOrPassword // 3.1.1 return code 4
	case access.NotAuthorized:
		code = packets.NotAuthorized // 3.1.1 return code 5
	}
	if hasUsername {
		c.who.Username = username
	}
	if code == 0 && p.WillFlag && !policy.CanPublish(c.who, unsafe.String(unsafe.SliceData(p.WillTopic), len(p.WillTopic))) {
		code = packets.NotAuthorized // the will could never be published
	}
	if code == 0 {
		return true
	}
	c.b.stats.AuthFailures.Add(1)
	c.log.Info("connection refused", "client", c.id, "user", username, "reason", code.String(), "remote", c.conn.RemoteAddr().String())
	time.Sleep(authFailureDelay)
	c.refuse(c.version, code)
	return false
}

// mayPublish reports whether the ACL lets this client publish to topic.
func (c *client) mayPublish(topic []byte) bool {
	return c.b.guard.policy.Load().CanPublish(c.who, unsafe.String(unsafe.SliceData(topic), len(topic)))
}

// refusePublish answers a PUBLISH the ACL refuses. The message is dropped; a 5.0 client is
// told with PUBACK or PUBREC 0x87 [MQTT-3.4.2-1], which also ends a QoS 2 exchange. A 3.x
// client cannot be told: it gets a normal acknowledgement, as the 3.1.1 spec allows, so it
// does not send the message again forever.
func (c *client) refusePublish(p *packets.Publish) error {
	c.b.stats.ACLDenied.Add(1)
	reason := packets.Success
	if c.version == packets.V5 {
		reason = packets.NotAuthorized
	}
	switch p.QoS {
	case 1:
		c.ack(packets.TypePuback, p.PacketID, reason)
	case 2:
		c.ack(packets.TypePubrec, p.PacketID, reason)
	}
	return nil
}

// maySubscribe reports whether the ACL lets this client subscribe to filter (without any
// $share prefix).
func (c *client) maySubscribe(filter string) bool {
	if c.b.guard.policy.Load().CanSubscribe(c.who, filter) {
		return true
	}
	c.b.stats.ACLDenied.Add(1)
	return false
}

// mayRead reports whether this client may receive a message on topic.
func (c *client) mayRead(topic string) bool {
	return c.b.guard.policy.Load().CanRead(c.who, topic)
}

// keepReaders removes from m the deliveries whose session may not read topic, before the
// store or any queue sees them. A session restored from the store has no identity until
// its client reconnects; it is checked with its client id alone. In place: no allocation.
func (b *Broker) keepReaders(m *topics.Matches, topic string) {
	acl := b.guard.policy.Load().ACL
	if acl == nil {
		return
	}
	kept := m.Deliveries[:0]
	for _, d := range m.Deliveries {
		if e := b.registry.get(d.Client); e != nil && !b.mayRead(acl, e, topic) {
			b.stats.ACLDenied.Add(1)
			continue
		}
		kept = append(kept, d)
	}
	m.Deliveries = kept
}

func (b *Broker) mayRead(acl *access.ACL, e *entry, topic string) bool {
	if who := e.identity.Load(); who != nil {
		return acl.CanRead(*who, topic)
	}
	return acl.CanRead(identity{ClientID: e.s.ClientID}, topic)
}
