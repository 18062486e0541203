package engine

import (
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/x0a1b/promptmq/packets"
	"github.com/x0a1b/promptmq/session"
	"github.com/x0a1b/promptmq/telemetry"
	"github.com/x0a1b/promptmq/topics"
)

// telemetryState is what the broker keeps for its operators beyond Stats. Instrument sets
// processing before Serve; nothing writes it afterwards, so the publish path reads it with
// no synchronisation.
type telemetryState struct {
	// processing is nil when metrics are disabled: the publish path then skips the clock.
	processing *telemetry.Histogram
	// version is what $SYS/broker/version says.
	version string

	snapshotMu sync.Mutex // guards snapshot
	snapshot   GaugeSnapshot

	sysMu   sync.Mutex // guards sysStop
	sysStop func()     // stops the $SYS publisher; nil when none runs
}

// countingReader counts the bytes read from a connection: one add per read syscall, which
// reads up to 4 KiB, rather than one per packet.
type countingReader struct {
	r io.Reader
	n *atomic.Uint64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(uint64(n))
	return n, err
}

// SetVersion sets the version $SYS/broker/version publishes. Call it before Serve.
func (b *Broker) SetVersion(version string) { b.tel.version = version }

// GaugeSnapshot is the broker's state at one instant, computed when read (DESIGN.md,
// Concurrency: counters are atomic, gauges are computed when scraped).
type GaugeSnapshot struct {
	Connections      int64 // connections past CONNECT
	SessionsOnline   int
	SessionsOffline  int
	Subscriptions    int
	RetainedMessages int
	RetainedBytes    int64
	InflightMessages int   // sent QoS 1/2 deliveries awaiting acknowledgement
	QueuedMessages   int   // deliveries waiting to be sent
	QueuedBytes      int64 // bytes held by every session's queue (bounded by mqtt.max-memory)
}

// Gauges walks the sessions to compute the gauges. It takes each session's lock in turn, not
// Broker.mu for the whole walk, so connects are not held up by a scrape.
func (b *Broker) Gauges() GaugeSnapshot {
	b.mu.Lock()
	entries := make([]*entry, 0, len(b.sessions))
	for _, e := range b.sessions {
		entries = append(entries, e)
	}
	b.mu.Unlock()
	g := GaugeSnapshot{
		Connections:      b.connections.Load(),
		Subscriptions:    b.router.Count(),
		RetainedMessages: b.retained.Len(),
		RetainedBytes:    b.retained.Bytes(),
		QueuedBytes:      b.memory.Load(),
	}
	for _, e := range entries {
		e.mu.Lock()
		if e.ended {
			e.mu.Unlock()
			continue
		}
		if e.client != nil {
			g.SessionsOnline++
		} else {
			g.SessionsOffline++
		}
		g.InflightMessages += e.s.Inflight()
		g.QueuedMessages += e.s.Queued()
		e.mu.Unlock()
	}
	return g
}

// routed counts a PUBLISH from a client once route has enqueued its deliveries, and, for
// one PUBLISH in processingSampleEvery, records the time since it was admitted (start, unix
// ns). Wills and $SYS values go through route too and are not messages received from a
// client, which is why route does not count.
func (b *Broker) routed(start int64, m *topics.Matches) {
	n := b.stats.MessagesReceived.Add(1)
	if len(m.Deliveries) == 0 {
		b.stats.NoSubscribers.Add(1)
	}
	if h := b.tel.processing; h != nil && n%processingSampleEvery == 0 {
		h.Observe(now() - start)
	}
}

// processingSampleEvery is how many PUBLISH packets share one processing-time observation.
// Reading the clock costs 80-110 ns on this project's virtual machines, about 10% of routing
// a PUBLISH to three subscribers, and the acceptance bar for metrics is 3%; one in 64 costs
// under 2 ns a publish. The start time is free: the message is stamped with it anyway.
// Quantiles of a sampled histogram are those of every publish; its _count is not a count of
// messages (promptmq_messages_received_total is). Rejected: timing every publish.
const processingSampleEvery = 64

// sentPackets counts the control packets in an encoded buffer by type. The writer calls it
// on the acknowledgements and control packets it is about to write, so the many places
// that queue one need no counter of their own; fresh PUBLISH deliveries are MessagesSent.
func (s *Stats) sentPackets(buf []byte) {
	for len(buf) >= 2 {
		t := packets.Type(buf[0] >> 4)
		// The Remaining Length is a variable byte integer of at most 4 bytes [MQTT-1.5.5].
		length, i, mult := 0, 1, 1
		for ; i < len(buf) && i <= 4; i++ {
			length += int(buf[i]&0x7F) * mult
			mult <<= 7
			if buf[i]&0x80 == 0 {
				break
			}
		}
		s.PacketsSent[t].Add(1)
		next := i + 1 + length
		if next > len(buf) {
			return
		}
		buf = buf[next:]
	}
}

// Packet types each direction carries, for the packets_*_total{type} series.
var (
	clientPacketTypes = [...]packets.Type{packets.TypeConnect, packets.TypePublish, packets.TypePuback, packets.TypePubrec,
		packets.TypePubrel, packets.TypePubcomp, packets.TypeSubscribe, packets.TypeUnsubscribe, packets.TypePingreq,
		packets.TypeDisconnect, packets.TypeAuth}
	serverPacketTypes = [...]packets.Type{packets.TypeConnack, packets.TypePublish, packets.TypePuback, packets.TypePubrec,
		packets.TypePubrel, packets.TypePubcomp, packets.TypeSuback, packets.TypeUnsuback, packets.TypePingresp,
		packets.TypeDisconnect, packets.TypeAuth}
)

// protocolErrors are the reason codes that mean a client broke the protocol or asked for
// what this broker does not offer, with the label each is exported under. Ends that are not
// the client's fault (shutdown, takeover, keep-alive, quota) are left out.
var protocolErrors = [...]struct {
	code  packets.ReasonCode
	label string
}{
	{packets.MalformedPacket, "malformed_packet"},
	{packets.ProtocolError, "protocol_error"},
	{packets.UnsupportedProtocolVersion, "unsupported_protocol_version"},
	{packets.ClientIdentifierNotValid, "client_identifier_not_valid"},
	{packets.BadAuthenticationMethod, "bad_authentication_method"},
	{packets.TopicNameInvalid, "topic_name_invalid"},
	{packets.ReceiveMaximumExceeded, "receive_maximum_exceeded"},
	{packets.TopicAliasInvalid, "topic_alias_invalid"},
	{packets.PacketTooLarge, "packet_too_large"},
	{packets.PayloadFormatInvalid, "payload_format_invalid"},
	{packets.RetainNotSupported, "retain_not_supported"},
	{packets.QoSNotSupported, "qos_not_supported"},
	{packets.SharedSubscriptionsNotSupported, "shared_subscriptions_not_supported"},
	{packets.SubscriptionIdentifiersNotSupported, "subscription_identifiers_not_supported"},
	{packets.WildcardSubscriptionsNotSupported, "wildcard_subscriptions_not_supported"},
}

// Instrument registers the broker's metrics in r and turns on the measurements that cost
// time on the publish path. Call it once, before Serve; without it (metrics.enabled =
// false) the broker still counts in Stats but never reads the clock for metrics.
func (b *Broker) Instrument(r *telemetry.Registry) {
	s := &b.stats
	gauge := func(read func(g *GaugeSnapshot) float64) func() float64 {
		return func() float64 {
			b.tel.snapshotMu.Lock()
			defer b.tel.snapshotMu.Unlock()
			return read(&b.tel.snapshot)
		}
	}
	// One walk of the sessions per scrape serves every gauge below.
	r.OnScrape(func() {
		g := b.Gauges()
		b.tel.snapshotMu.Lock()
		b.tel.snapshot = g
		b.tel.snapshotMu.Unlock()
	})

	b.instrumentStore(r)
	b.instrumentCluster(r)
	r.Gauge("promptmq_connections_current", "MQTT connections open past CONNECT.", "",
		gauge(func(g *GaugeSnapshot) float64 { return float64(g.Connections) }))
	r.Counter("promptmq_connections_total", "MQTT connections accepted with a successful CONNACK since start.", "", s.Connected.Load)
	r.Counter("promptmq_messages_received_total", "PUBLISH packets received from clients and routed.", "", s.MessagesReceived.Load)
	r.Counter("promptmq_messages_published_total", "PUBLISH packets delivered to subscribers (written to their connection).", "", s.MessagesSent.Load)
	r.Gauge("promptmq_messages_retained", "Retained messages held.", "",
		gauge(func(g *GaugeSnapshot) float64 { return float64(g.RetainedMessages) }))
	r.Gauge("promptmq_messages_retained_bytes", "Bytes of the retained messages held.", "",
		gauge(func(g *GaugeSnapshot) float64 { return float64(g.RetainedBytes) }))
	b.tel.processing = r.Histogram("promptmq_message_processing_duration_seconds",
		"Time from a PUBLISH admitted to its last delivery enqueued, sampled: one PUBLISH in 64 is timed.", "", telemetry.DurationBuckets(), telemetry.Nanoseconds)

	const droppedHelp = "Messages not delivered to a subscriber, by reason."
	for reason := range session.NumDropReasons {
		r.Counter("promptmq_messages_dropped_total", droppedHelp, telemetry.Labels("reason", reason.String()), s.Dropped[reason].Load)
	}
	r.Counter("promptmq_messages_dropped_total", droppedHelp, telemetry.Labels("reason", "no_subscribers"), s.NoSubscribers.Load)

	for _, t := range clientPacketTypes {
		r.Counter("promptmq_packets_received_total", "MQTT control packets received, by type.",
			telemetry.Labels("type", strings.ToLower(t.String())), s.PacketsReceivedByType[t].Load)
	}
	for _, t := range serverPacketTypes {
		read := s.PacketsSent[t].Load
		if t == packets.TypePublish {
			read = func() uint64 { return s.MessagesSent.Load() + s.PacketsSent[packets.TypePublish].Load() }
		}
		r.Counter("promptmq_packets_sent_total", "MQTT control packets sent, by type.", telemetry.Labels("type", strings.ToLower(t.String())), read)
	}
	r.Counter("promptmq_bytes_received_total", "Bytes read from MQTT connections.", "", s.BytesReceived.Load)
	r.Counter("promptmq_bytes_sent_total", "Bytes written to MQTT connections.", "", s.BytesSent.Load)

	r.Gauge("promptmq_subscriptions_current", "Subscriptions held, shared ones included.", "",
		gauge(func(g *GaugeSnapshot) float64 { return float64(g.Subscriptions) }))
	const sessionsHelp = "Sessions held, by whether a connection is attached."
	r.Gauge("promptmq_sessions_current", sessionsHelp, telemetry.Labels("state", "online"),
		gauge(func(g *GaugeSnapshot) float64 { return float64(g.SessionsOnline) }))
	r.Gauge("promptmq_sessions_current", sessionsHelp, telemetry.Labels("state", "offline"),
		gauge(func(g *GaugeSnapshot) float64 { return float64(g.SessionsOffline) }))
	r.Gauge("promptmq_inflight_messages", "QoS 1/2 deliveries sent and awaiting acknowledgement.", "",
		gauge(func(g *GaugeSnapshot) float64 { return float64(g.InflightMessages) }))
	r.Gauge("promptmq_queued_messages", "Deliveries queued and not yet sent.", "",
		gauge(func(g *GaugeSnapshot) float64 { return float64(g.QueuedMessages) }))
	r.Gauge("promptmq_queued_bytes", "Bytes held by session queues, bounded by mqtt.max-memory.", "",
		gauge(func(g *GaugeSnapshot) float64 { return float64(g.QueuedBytes) }))

	for _, pe := range protocolErrors {
		r.Counter("promptmq_protocol_errors_total", "Connections ended or refused because the client broke the protocol, by reason.",
			telemetry.Labels("reason", pe.label), s.Disconnects[pe.code].Load)
	}
	r.Counter("promptmq_auth_failures_total", "CONNECTs refused for bad credentials or lack of authorisation.", "", func() uint64 {
		return s.Disconnects[packets.BadUserNameOrPassword].Load() + s.Disconnects[packets.NotAuthorized].Load()
	})
	telemetry.RegisterSystem(r)
}
