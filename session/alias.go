package session

import (
	"strings"

	"github.com/x0a1b/promptmq/packets"
)

// InboundAliases maps the Topic Aliases a client sets on its PUBLISH packets. Aliases belong
// to a network connection, not to the session [MQTT-3.3.2-7].
type InboundAliases struct {
	// Maximum is the Topic Alias Maximum the broker sent in CONNACK.
	Maximum uint16
	topics  []string
}

// Resolve applies the Topic Alias of p (if any) and returns the topic to route. A topic in
// p with an alias sets the alias; an empty topic uses it.
func (a *InboundAliases) Resolve(p *packets.Publish) ([]byte, error) {
	if !p.Properties.Has(packets.PropTopicAlias) {
		if len(p.Topic) == 0 {
			return nil, packets.Errorf(packets.ProtocolError, "empty topic without a topic alias") // [MQTT-3.3.2-1]
		}
		return p.Topic, nil
	}
	alias := p.Properties.TopicAlias
	if alias == 0 || alias > a.Maximum {
		return nil, packets.Errorf(packets.TopicAliasInvalid, "topic alias %d outside 1..%d", alias, a.Maximum) // [MQTT-3.3.2-8] [MQTT-3.3.2-9]
	}
	if a.topics == nil {
		a.topics = make([]string, a.Maximum+1)
	}
	if len(p.Topic) > 0 {
		if a.topics[alias] != string(p.Topic) {
			a.topics[alias] = string(p.Topic)
		}
		return p.Topic, nil
	}
	t := a.topics[alias]
	if t == "" {
		return nil, packets.Errorf(packets.ProtocolError, "topic alias %d used before it was set", alias)
	}
	return []byte(t), nil
}

// OutboundAliases assigns Topic Aliases to topics the broker sends, up to the client's Topic
// Alias Maximum [MQTT-3.3.2-10]. The first send of a topic carries topic and alias; later
// sends carry the alias alone. When the aliases run out, further topics go in full.
type OutboundAliases struct {
	Maximum uint16
	byTopic map[string]uint16
}

// Reset forgets every alias: a new connection starts with none [MQTT-3.3.2-7].
func (a *OutboundAliases) Reset(maximum uint16) {
	a.Maximum = maximum
	a.byTopic = nil
}

// Lookup returns the alias for topic and whether the topic may be left out (already
// known to the client). It assigns a new alias while any remain; alias 0 means none.
func (a *OutboundAliases) Lookup(topic string) (alias uint16, known bool) {
	if a.Maximum == 0 {
		return 0, false
	}
	if alias, ok := a.byTopic[topic]; ok {
		return alias, true
	}
	if len(a.byTopic) >= int(a.Maximum) {
		return 0, false
	}
	if a.byTopic == nil {
		a.byTopic = make(map[string]uint16)
	}
	alias = uint16(len(a.byTopic) + 1)
	// A copy: the topic is a view of a pooled Message's buffer (Message.fill), which is
	// written again once the message is released, while the alias lasts as long as the
	// connection. Kept as the key, it changed under the map, and the next lookup of the
	// topic missed (a delivery went out without its alias, seen in TestTopicAliases).
	a.byTopic[strings.Clone(topic)] = alias
	return alias, false
}

// Forget undoes an assignment when the PUBLISH that would set it was not sent.
func (a *OutboundAliases) Forget(topic string, alias uint16) {
	if a.byTopic[topic] == alias && int(alias) == len(a.byTopic) {
		delete(a.byTopic, topic)
	}
}
