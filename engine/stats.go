package engine

import (
	"sync/atomic"

	"github.com/x0a1b/promptmq/packets"
	"github.com/x0a1b/promptmq/session"
)

// Stats are the broker's counters. Each is one atomic add on the hot path; gauges (clients,
// sessions, queued bytes) are computed when read.
type Stats struct {
	Accepted         atomic.Uint64
	Connected        atomic.Uint64
	PacketsReceived  atomic.Uint64
	MessagesReceived atomic.Uint64
	MessagesSent     atomic.Uint64
	// StoreFailures counts store writes that failed (the broker keeps serving).
	StoreFailures atomic.Uint64
	Dropped       [session.NumDropReasons]atomic.Uint64
	// AuthFailures counts CONNECTs refused for their credentials (promptmq_auth_failures_total).
	AuthFailures atomic.Uint64
	// ACLDenied counts publishes, subscriptions and deliveries the ACL refused.
	ACLDenied atomic.Uint64
	// Disconnects counts connections the broker ended, by the reason code it gave.
	Disconnects [256]atomic.Uint64
	// PacketsReceivedByType and PacketsSent count control packets by type. PacketsSent
	// counts what the writer takes from the control buffer (acks, CONNACK, SUBACK, resent
	// PUBLISH ...); a fresh PUBLISH delivery is counted once, in MessagesSent.
	PacketsReceivedByType [16]atomic.Uint64
	PacketsSent           [16]atomic.Uint64
	// BytesReceived and BytesSent count bytes moved on MQTT connections, one add per syscall.
	BytesReceived atomic.Uint64
	BytesSent     atomic.Uint64
	// NoSubscribers counts client PUBLISH packets that matched no subscription.
	NoSubscribers atomic.Uint64
}

func (s *Stats) dropped(reason session.DropReason, n int) {
	s.Dropped[reason].Add(uint64(n))
}

func (s *Stats) disconnect(code packets.ReasonCode) { s.Disconnects[code].Add(1) }
