package cluster

import (
	"errors"
	"strings"
)

// Subject mapping: how an MQTT topic or filter becomes a NATS subject.
//
// Invariants: every MQTT level becomes exactly one NATS token; a token is never empty and
// never holds '.', '*', '>' or whitespace, so the mapping is total (every valid topic has a
// subject) and reversible (DecodeTopic gives the topic back). A token keeps the bytes
// [A-Za-z0-9_-] as they are and writes every other byte, the escape byte '=' included, as
// '=' and two upper-case hex digits; the empty level is the token "=" alone, which no
// escaped level can be because an escape always has two digits after '='. '=' is chosen over
// '%' or '~' because it is also allowed in JetStream key-value keys, should retained state
// ever move there. In a filter, '+' becomes '*' and a trailing '#' becomes '>' plus the
// parent subject itself, since MQTT "a/#" also matches "a" [MQTT-4.7.1-1].
//
// Rejected: mapping only '.' and the wildcards and leaving other bytes alone. Spaces, tabs
// and empty levels would still break subjects, and a partial escape is easy to get wrong in
// one direction only; the byte-class rule is checked by a round-trip fuzz test.

const (
	// messagePrefix starts the subject of every routed message; the topic's levels follow.
	messagePrefix = "pmq.m"
	escapeByte    = '='
	hexDigits     = "0123456789ABCDEF"
)

// errBadSubject is returned for a subject this package did not produce.
var errBadSubject = errors.New("cluster: subject is not an escaped MQTT topic")

func plainByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// appendLevel writes one MQTT level as one NATS token.
func appendLevel(dst []byte, level string) []byte {
	if level == "" {
		return append(dst, escapeByte)
	}
	for i := 0; i < len(level); i++ {
		c := level[i]
		if plainByte(c) {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, escapeByte, hexDigits[c>>4], hexDigits[c&0xF])
	}
	return dst
}

// AppendSubject appends the NATS subject of a topic name (no wildcards) to dst. It allocates
// nothing when dst has room.
func AppendSubject(dst []byte, topic string) []byte {
	dst = append(dst, messagePrefix...)
	for {
		dst = append(dst, '.')
		i := strings.IndexByte(topic, '/')
		if i < 0 {
			return appendLevel(dst, topic)
		}
		dst = appendLevel(dst, topic[:i])
		topic = topic[i+1:]
	}
}

// FilterSubjects returns the NATS subjects that together match what an MQTT filter (without
// a $share prefix) matches: one, or two for a filter ending in '#' ("a/#" gives "pmq.m.a.>"
// and "pmq.m.a"; "#" alone gives "pmq.m.>" only, as a topic has at least one level).
func FilterSubjects(filter string) []string {
	var b []byte
	b = append(b, messagePrefix...)
	var parent []byte
	for {
		b = append(b, '.')
		i := strings.IndexByte(filter, '/')
		level := filter
		if i >= 0 {
			level = filter[:i]
		}
		switch level {
		case "+":
			b = append(b, '*')
		case "#":
			if parent != nil {
				return []string{string(append(b, '>')), string(parent)}
			}
			return []string{string(append(b, '>'))}
		default:
			b = appendLevel(b, level)
		}
		if i < 0 {
			return []string{string(b)}
		}
		parent = append(parent[:0], b...)
		filter = filter[i+1:]
	}
}

// DecodeTopic returns the MQTT topic of a subject made by AppendSubject.
func DecodeTopic(subject string) (string, error) {
	rest, ok := strings.CutPrefix(subject, messagePrefix+".")
	if !ok {
		return "", errBadSubject
	}
	out := make([]byte, 0, len(rest))
	for first := true; ; first = false {
		if !first {
			out = append(out, '/')
		}
		token, tail, more := strings.Cut(rest, ".")
		level, err := decodeLevel(token, out)
		if err != nil {
			return "", err
		}
		out = level
		if !more {
			return string(out), nil
		}
		rest = tail
	}
}

// decodeLevel appends the MQTT level of one token to dst.
func decodeLevel(token string, dst []byte) ([]byte, error) {
	if token == string(escapeByte) {
		return dst, nil
	}
	if token == "" {
		return nil, errBadSubject
	}
	for i := 0; i < len(token); i++ {
		c := token[i]
		if plainByte(c) {
			dst = append(dst, c)
			continue
		}
		if c != escapeByte || i+2 >= len(token) {
			return nil, errBadSubject
		}
		hi, lo := unhex(token[i+1]), unhex(token[i+2])
		if hi < 0 || lo < 0 {
			return nil, errBadSubject
		}
		dst = append(dst, byte(hi<<4|lo))
		i += 2
	}
	return dst, nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// queueName is the NATS queue group of a shared subscription: the whole "$share/g/f" filter
// escaped as one token, so two groups or two filters never share a queue.
func queueName(sharedFilter string) string {
	return string(appendLevel(nil, sharedFilter))
}

// sessionSubject is where the node holding a client's session answers takeover requests.
func sessionSubject(clientID string) string {
	return string(appendLevel([]byte("pmq.s."), clientID))
}
