package topics

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// SpecMaxTopicLength is the longest topic the wire format can carry: a UTF-8 encoded
// string has a two-byte length prefix [MQTT-1.5.4-1].
const SpecMaxTopicLength = 65535

// sharePrefix opens a shared subscription filter: $share/{ShareName}/{filter}.
const sharePrefix = "$share/"

// Limits bounds topic names and filters beyond the specification. A zero field means
// the specification's own limit: 65535 bytes, any number of levels.
type Limits struct {
	MaxTopicLength int // bytes; 0 or more than 65535 means 65535
	MaxLevels      int // levels separated by '/'; 0 means unlimited
}

func (l Limits) maxLength() int {
	if l.MaxTopicLength <= 0 || l.MaxTopicLength > SpecMaxTopicLength {
		return SpecMaxTopicLength
	}
	return l.MaxTopicLength
}

// Errors returned by ValidateName and ValidateFilter, always wrapped with detail; test
// with errors.Is. The engine maps them to Topic Name invalid (0x90) or Topic Filter
// invalid (0x8F).
var (
	ErrEmpty            = errors.New("topic is empty")
	ErrTooLong          = errors.New("topic is too long")
	ErrTooManyLevels    = errors.New("topic has too many levels")
	ErrInvalidUTF8      = errors.New("topic is not valid UTF-8")
	ErrNullCharacter    = errors.New("topic contains U+0000")
	ErrWildcardInName   = errors.New("topic name contains a wildcard")
	ErrWildcardPosition = errors.New("wildcard does not occupy a whole level")
	ErrMultiLevelNotEnd = errors.New("multi-level wildcard is not the last level")
	ErrShareName        = errors.New("invalid shared subscription share name")
	ErrShareFilter      = errors.New("shared subscription has no topic filter")
)

// ValidateName reports why topic cannot be the Topic Name of a PUBLISH, or nil. It is
// called for every inbound PUBLISH, so it makes one pass and allocates only on failure.
func ValidateName(topic string, lim Limits) error {
	if len(topic) == 0 {
		return ErrEmpty // [MQTT-4.7.3-1]
	}
	if len(topic) > lim.maxLength() {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLong, len(topic), lim.maxLength())
	}
	levels := 1
	for i := 0; i < len(topic); {
		c := topic[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(topic[i:])
			if r == utf8.RuneError && size == 1 {
				return fmt.Errorf("%w: at byte %d", ErrInvalidUTF8, i) // [MQTT-1.5.4-1]
			}
			i += size
			continue
		}
		switch c {
		case 0:
			return fmt.Errorf("%w: at byte %d", ErrNullCharacter, i) // [MQTT-1.5.4-2] [MQTT-4.7.3-2]
		case '+', '#':
			return fmt.Errorf("%w: %q at byte %d", ErrWildcardInName, c, i) // [MQTT-3.3.2-2]
		case '/':
			levels++
		}
		i++
	}
	if lim.MaxLevels > 0 && levels > lim.MaxLevels {
		return fmt.Errorf("%w: %d levels, limit %d", ErrTooManyLevels, levels, lim.MaxLevels)
	}
	return nil
}

// ValidateFilter reports why filter cannot be a Topic Filter of a SUBSCRIBE or
// UNSUBSCRIBE, or nil. A $share/{ShareName}/{filter} form is checked as a shared
// subscription: the share name and the inner filter must both be present and valid.
// Length counts the whole filter as sent; levels count only the inner filter.
func ValidateFilter(filter string, lim Limits) error {
	if len(filter) == 0 {
		return ErrEmpty // [MQTT-4.7.3-1]
	}
	if len(filter) > lim.maxLength() {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLong, len(filter), lim.maxLength())
	}
	if strings.HasPrefix(filter, sharePrefix) {
		rest := filter[len(sharePrefix):]
		slash := strings.IndexByte(rest, '/')
		if slash < 0 {
			// [MQTT-4.8.2-2] the ShareName must be followed by "/" and a Topic Filter.
			if strings.ContainsAny(rest, "+#") {
				return fmt.Errorf("%w: %q contains a wildcard", ErrShareName, rest)
			}
			return fmt.Errorf("%w: %q", ErrShareFilter, filter)
		}
		group := rest[:slash]
		if group == "" {
			return fmt.Errorf("%w: empty", ErrShareName) // [MQTT-4.8.2-1]
		}
		if strings.ContainsAny(group, "+#") {
			return fmt.Errorf("%w: %q contains a wildcard", ErrShareName, group) // [MQTT-4.8.2-1]
		}
		if err := checkText(group); err != nil {
			return err
		}
		inner := rest[slash+1:]
		if inner == "" {
			return fmt.Errorf("%w: %q", ErrShareFilter, filter) // [MQTT-4.8.2-2]
		}
		filter = inner
	}
	levels := 1
	levelStart := 0
	for i := 0; i < len(filter); {
		c := filter[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(filter[i:])
			if r == utf8.RuneError && size == 1 {
				return fmt.Errorf("%w: at byte %d", ErrInvalidUTF8, i) // [MQTT-1.5.4-1]
			}
			i += size
			continue
		}
		switch c {
		case 0:
			return fmt.Errorf("%w: at byte %d", ErrNullCharacter, i) // [MQTT-1.5.4-2] [MQTT-4.7.3-2]
		case '/':
			levels++
			levelStart = i + 1
		case '+':
			// [MQTT-4.7.1-2] the single-level wildcard must occupy an entire level.
			if i != levelStart || (i+1 < len(filter) && filter[i+1] != '/') {
				return fmt.Errorf("%w: '+' at byte %d", ErrWildcardPosition, i)
			}
		case '#':
			// [MQTT-4.7.1-1] '#' must be alone in its level and the last character.
			if i != levelStart || (i+1 < len(filter) && filter[i+1] != '/') {
				return fmt.Errorf("%w: '#' at byte %d", ErrWildcardPosition, i)
			}
			if i != len(filter)-1 {
				return fmt.Errorf("%w: '#' at byte %d", ErrMultiLevelNotEnd, i)
			}
		}
		i++
	}
	if lim.MaxLevels > 0 && levels > lim.MaxLevels {
		return fmt.Errorf("%w: %d levels, limit %d", ErrTooManyLevels, levels, lim.MaxLevels)
	}
	return nil
}

// checkText applies the UTF-8 string rules to a part of a filter checked apart from
// the level scan (the share name).
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return ErrInvalidUTF8 // [MQTT-1.5.4-1]
	}
	if strings.IndexByte(s, 0) >= 0 {
		return ErrNullCharacter // [MQTT-1.5.4-2]
	}
	return nil
}

// ParseShare splits a shared subscription filter $share/{group}/{inner}. ok reports
// whether filter has that shape (the prefix and a '/' after the group); it does not
// validate group or inner: ValidateFilter does.
func ParseShare(filter string) (group, inner string, ok bool) {
	if !strings.HasPrefix(filter, sharePrefix) {
		return "", "", false
	}
	rest := filter[len(sharePrefix):]
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		return "", "", false
	}
	return rest[:slash], rest[slash+1:], true
}

// MatchFilter reports whether topic matches filter by the plain rules of section
// 4.7, without any index. It serves as the reference for the tries and for callers
// with a single filter to test (an ACL rule, say). filter must not be a $share form.
func MatchFilter(filter, topic string) bool {
	if topic == "" || filter == "" {
		return false // neither can be empty [MQTT-4.7.3-1]
	}
	// [MQTT-4.7.2-1] a filter starting with a wildcard does not match a $ topic.
	if len(topic) > 0 && topic[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := cutLevel(filter)
		if fl == "#" {
			return true // matches the parent level and every level below [MQTT-4.7.1-1]
		}
		tl, trest, tmore := cutLevel(topic)
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore || !tmore {
			if fmore && !tmore {
				// "a/#" matches "a": the remaining filter must be exactly "#".
				return frest == "#"
			}
			return fmore == tmore
		}
		filter, topic = frest, trest
	}
}

// cutLevel splits s at its first '/': the level, what follows, and whether a '/' was
// there (so "a/" yields a second, empty level).
func cutLevel(s string) (level, rest string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}
