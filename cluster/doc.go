// Package cluster makes several promptmqd nodes act as one broker, with NATS as the distributed
// engine: an embedded nats-server per node (routes between nodes, interest-based routing, queue
// groups) or an existing NATS cluster. It owns the mapping of MQTT topics and filters to NATS
// subjects, forwarding of accepted messages to the nodes with interest, shared subscription
// groups across nodes (one NATS queue group each), retained state kept on every node,
// session takeover across nodes, node health by heartbeat, publication of a dead node's wills
// after their delay (willwait.go), and the acknowledgement of QoS 1/2 messages by the nodes
// they reached before their publisher's (acks.go). It never parses MQTT messages: the engine hands it encoded PUBLISH packets and
// opaque session bytes (through the Local interface it implements), and this package moves
// them.
//
// Subjects used (all in the NATS account of the node's connections):
//
//	pmq.m.<levels>   forwarded messages of that topic, batched (header + frames); queue groups for $share
//	pmq.r            a retained update, to every node
//	pmq.snap.<node>  a request for a node's retained snapshot (reply: one message per entry)
//	pmq.s.<client>   takeover request to the node holding that client's session (or its waiting will)
//	pmq.hb           heartbeats
//	pmq.w            wills of each node's connected clients, with their delay, set and cleared
//	pmq.i            each node's filters, announced as they come and go and in full to a joining node
//	pmq.ack.<node>   acknowledgements of the QoS 1/2 batches that node forwarded
package cluster
