package access

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/x0a1b/promptmq/topics"
)

// Permission is what an ACL rule grants: read (subscribe and receive), write (publish), both,
// or deny (neither, whatever another rule grants).
type Permission uint8

const (
	Read Permission = 1 << iota
	Write
	Deny
	ReadWrite = Read | Write
)

// Identity is who a check is made for: the client identifier and the user name (empty for an
// anonymous client).
type Identity struct {
	ClientID, Username string
}

// rule is one "topic" or "pattern" line.
type rule struct {
	perm   Permission
	filter string
	// pattern marks a "pattern" line, whose %c and %u stand for the client id and user name.
	pattern bool
}

// ACL is a parsed ACL file in Mosquitto's syntax:
//
//	topic [read|write|readwrite|deny] FILTER    (before any user line: anonymous clients)
//	user NAME                                   (the topic lines after it are NAME's)
//	pattern [read|write|readwrite|deny] FILTER  (every client; %c client id, %u user name)
//
// Invariants: an ACL is immutable once parsed, so checks take no lock and a reload swaps a
// pointer. A deny rule matching wins over every grant; with no matching grant access is
// refused (an ACL file lists what is allowed).
//
// Checking walks the rules of the client's user and the patterns, matching levels in place:
// nothing is allocated per check and %c/%u are compared where they stand instead of being
// substituted into a new string. A trie of rules was rejected: files are tens of lines,
// patterns differ per client, and a linear scan of short strings is faster than building
// a per-client tree.
type ACL struct {
	anonymous []rule
	users     map[string][]rule
	patterns  []rule
}

// LoadACL reads an ACL file.
func LoadACL(path string) (*ACL, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("acl file: %w", err)
	}
	defer f.Close()
	a, err := ParseACL(f)
	if err != nil {
		return nil, fmt.Errorf("acl file %s: %w", path, err)
	}
	return a, nil
}

// ParseACL parses ACL text. Blank lines and lines starting with # are ignored; a filter or
// user name is the rest of its line, so it may contain spaces, as in Mosquitto.
func ParseACL(r io.Reader) (*ACL, error) {
	a := &ACL{users: make(map[string][]rule)}
	var user *string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		keyword, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimLeft(rest, " \t")
		switch keyword {
		case "user":
			if rest == "" {
				return nil, fmt.Errorf("line %d: user needs a name", n)
			}
			name := rest
			user = &name
			if _, ok := a.users[name]; !ok {
				a.users[name] = nil
			}
		case "topic", "pattern":
			r, err := parseRule(rest, keyword == "pattern")
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			switch {
			case r.pattern:
				a.patterns = append(a.patterns, r)
			case user == nil:
				a.anonymous = append(a.anonymous, r)
			default:
				a.users[*user] = append(a.users[*user], r)
			}
		default:
			return nil, fmt.Errorf("line %d: unknown keyword %q (want topic, user or pattern)", n, keyword)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return a, nil
}

func parseRule(text string, pattern bool) (rule, error) {
	r := rule{perm: ReadWrite, pattern: pattern}
	word, rest, _ := strings.Cut(text, " ")
	switch word {
	case "read":
		r.perm = Read
	case "write":
		r.perm = Write
	case "readwrite":
		r.perm = ReadWrite
	case "deny":
		r.perm = Deny
	default:
		rest = text // no access word: readwrite, as in Mosquitto
	}
	r.filter = strings.TrimLeft(rest, " \t")
	if r.filter == "" {
		return rule{}, fmt.Errorf("rule needs a topic filter")
	}
	if err := topics.ValidateFilter(r.filter, topics.Limits{}); err != nil {
		return rule{}, fmt.Errorf("topic filter %q: %w", r.filter, err)
	}
	return r, nil
}

// CanPublish reports whether id may publish to topic.
func (a *ACL) CanPublish(id Identity, topic string) bool {
	return a.check(id, Write, func(r *rule) bool { return matchTopic(r.filter, topic, r.pattern, id) })
}

// CanRead reports whether id may receive a message published to topic. The engine asks it
// for every recipient, so a subscription wider than the ACL gets only what the ACL allows.
func (a *ACL) CanRead(id Identity, topic string) bool {
	return a.check(id, Read, func(r *rule) bool { return matchTopic(r.filter, topic, r.pattern, id) })
}

// CanSubscribe reports whether id may subscribe to filter: some read rule must overlap it
// and no deny rule may cover all of it. A subscription allowed here may still be wider than
// the ACL; CanRead filters its messages.
func (a *ACL) CanSubscribe(id Identity, filter string) bool {
	if a.denies(id, func(r *rule) bool { return covers(r.filter, filter, r.pattern, id) }) {
		return false
	}
	return a.grants(id, Read, func(r *rule) bool { return intersects(r.filter, filter, r.pattern, id) })
}

func (a *ACL) check(id Identity, want Permission, match func(*rule) bool) bool {
	return !a.denies(id, match) && a.grants(id, want, match)
}

// own returns the topic rules of id's user (or the anonymous rules).
func (a *ACL) own(id Identity) []rule {
	if id.Username == "" {
		return a.anonymous
	}
	return a.users[id.Username]
}

func (a *ACL) denies(id Identity, match func(*rule) bool) bool {
	return a.any(id, func(r *rule) bool { return r.perm == Deny && match(r) })
}

func (a *ACL) grants(id Identity, want Permission, match func(*rule) bool) bool {
	return a.any(id, func(r *rule) bool { return r.perm&want != 0 && match(r) })
}

func (a *ACL) any(id Identity, f func(*rule) bool) bool {
	own := a.own(id)
	for i := range own {
		if f(&own[i]) {
			return true
		}
	}
	for i := range a.patterns {
		if f(&a.patterns[i]) {
			return true
		}
	}
	return false
}

// nextLevel splits s at its first '/': the level, what follows it, and whether there was a '/'.
func nextLevel(s string) (level, rest string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// dollarGuard reports whether a filter starting with a wildcard meets a name or filter
// starting with '$', which it never matches [MQTT-4.7.2-1].
func dollarGuard(filter, other string) bool {
	return len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') && len(other) > 0 && other[0] == '$'
}

// usable reports whether a pattern may be applied for id. A client id or user name holding
// '/', '+' or '#' would widen the pattern (a user named "#" matching everything), so such a
// pattern never applies, as in Mosquitto.
func usable(filter string, pattern bool, id Identity) bool {
	if !pattern {
		return true
	}
	if strings.Contains(filter, "%c") && (id.ClientID == "" || strings.ContainsAny(id.ClientID, "/+#")) {
		return false
	}
	if strings.Contains(filter, "%u") && (id.Username == "" || strings.ContainsAny(id.Username, "/+#")) {
		return false
	}
	return true
}

// levelEqual compares one level of a rule with one level of a topic or filter; in a pattern
// %c and %u stand for the client id and user name.
func levelEqual(ruleLevel, level string, pattern bool, id Identity) bool {
	if !pattern {
		return ruleLevel == level
	}
	for len(ruleLevel) > 0 {
		if len(ruleLevel) >= 2 && ruleLevel[0] == '%' && (ruleLevel[1] == 'c' || ruleLevel[1] == 'u') {
			value := id.ClientID
			if ruleLevel[1] == 'u' {
				value = id.Username
			}
			if !strings.HasPrefix(level, value) {
				return false
			}
			level, ruleLevel = level[len(value):], ruleLevel[2:]
			continue
		}
		if len(level) == 0 || level[0] != ruleLevel[0] {
			return false
		}
		level, ruleLevel = level[1:], ruleLevel[1:]
	}
	return len(level) == 0
}

// matchTopic reports whether the rule's filter matches a topic name.
func matchTopic(filter, topic string, pattern bool, id Identity) bool {
	if dollarGuard(filter, topic) || !usable(filter, pattern, id) {
		return false
	}
	for {
		fl, frest, fmore := nextLevel(filter)
		if fl == "#" {
			return true // [MQTT-4.7.1-2]
		}
		tl, trest, tmore := nextLevel(topic)
		if fl != "+" && !levelEqual(fl, tl, pattern, id) {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !fmore:
			return false
		case !tmore:
			return frest == "#" // "a/#" matches "a" too [MQTT-4.7.1-2]
		}
		filter, topic = frest, trest
	}
}

// intersects reports whether some topic name matches both the rule's filter and filter.
func intersects(ruleFilter, filter string, pattern bool, id Identity) bool {
	if dollarGuard(ruleFilter, filter) || dollarGuard(filter, ruleFilter) || !usable(ruleFilter, pattern, id) {
		return false
	}
	for {
		rl, rrest, rmore := nextLevel(ruleFilter)
		fl, frest, fmore := nextLevel(filter)
		if rl == "#" || fl == "#" {
			return true
		}
		if rl != "+" && fl != "+" && !levelEqual(rl, fl, pattern, id) {
			return false
		}
		switch {
		case !rmore && !fmore:
			return true
		case !rmore:
			return frest == "#"
		case !fmore:
			return rrest == "#"
		}
		ruleFilter, filter = rrest, frest
	}
}

// covers reports whether every topic name matching filter also matches the rule's filter.
func covers(ruleFilter, filter string, pattern bool, id Identity) bool {
	if dollarGuard(ruleFilter, filter) || !usable(ruleFilter, pattern, id) {
		return false
	}
	for {
		rl, rrest, rmore := nextLevel(ruleFilter)
		fl, frest, fmore := nextLevel(filter)
		if rl == "#" {
			return true
		}
		if fl == "#" {
			return false
		}
		if rl != "+" && (fl == "+" || !levelEqual(rl, fl, pattern, id)) {
			return false
		}
		switch {
		case !rmore && !fmore:
			return true
		case !rmore:
			return false
		case !fmore:
			return rrest == "#"
		}
		ruleFilter, filter = rrest, frest
	}
}
