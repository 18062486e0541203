package topics

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	cases := []struct {
		name  string
		topic string
		lim   Limits
		want  error
	}{
		{"simple", "sport/tennis/player1", Limits{}, nil},
		{"single level", "sport", Limits{}, nil},
		{"leading slash is an empty level", "/finance", Limits{}, nil},
		{"trailing slash is an empty level", "sport/", Limits{}, nil},
		{"only a slash", "/", Limits{}, nil},
		{"empty levels", "a//b", Limits{}, nil},
		{"dollar topic", "$SYS/broker/load", Limits{}, nil},
		{"space is allowed", "sport tennis", Limits{}, nil},
		{"multi-byte UTF-8", "sensors/température/€", Limits{}, nil},
		{"empty", "", Limits{}, ErrEmpty},
		{"plus wildcard", "sport/+", Limits{}, ErrWildcardInName},
		{"hash wildcard", "sport/#", Limits{}, ErrWildcardInName},
		{"wildcard inside a level", "sp+ort", Limits{}, ErrWildcardInName},
		{"null character", "a\x00b", Limits{}, ErrNullCharacter},
		{"invalid UTF-8", "a\xffb", Limits{}, ErrInvalidUTF8},
		{"UTF-16 surrogate encoded", "a\xed\xa0\x80", Limits{}, ErrInvalidUTF8},
		{"at length limit", "abcd", Limits{MaxTopicLength: 4}, nil},
		{"over length limit", "abcde", Limits{MaxTopicLength: 4}, ErrTooLong},
		{"over spec length", strings.Repeat("a", 65536), Limits{}, ErrTooLong},
		{"at spec length", strings.Repeat("a", 65535), Limits{}, nil},
		{"limit above spec is capped", strings.Repeat("a", 65536), Limits{MaxTopicLength: 1 << 20}, ErrTooLong},
		{"at level limit", "a/b/c", Limits{MaxLevels: 3}, nil},
		{"over level limit", "a/b/c/d", Limits{MaxLevels: 3}, ErrTooManyLevels},
		{"empty levels count", "//", Limits{MaxLevels: 2}, ErrTooManyLevels},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateName(c.topic, c.lim)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("ValidateName(%q) = %v, want %v", c.topic, err, c.want)
			}
		})
	}
}

func TestValidateFilter(t *testing.T) {
	cases := []struct {
		name   string
		filter string
		lim    Limits
		want   error
	}{
		{"exact", "sport/tennis/player1", Limits{}, nil},
		{"multi-level alone", "#", Limits{}, nil},
		{"multi-level last", "sport/tennis/#", Limits{}, nil},
		{"single-level alone", "+", Limits{}, nil},
		{"single-level first", "+/tennis/#", Limits{}, nil},
		{"single-level middle", "sport/+/player1", Limits{}, nil},
		{"single-level last", "sport/+", Limits{}, nil},
		{"several single-level", "+/+", Limits{}, nil},
		{"empty level then single", "/+", Limits{}, nil},
		{"empty levels", "a//b/", Limits{}, nil},
		{"dollar filter", "$SYS/#", Limits{}, nil},
		{"share word only", "$share", Limits{}, nil},
		{"share-like prefix", "$shared/x", Limits{}, nil},
		{"empty", "", Limits{}, ErrEmpty},
		{"multi-level not last", "sport/tennis/#/ranking", Limits{}, ErrMultiLevelNotEnd},
		{"multi-level then slash", "#/", Limits{}, ErrMultiLevelNotEnd},
		{"multi-level inside level", "sport/tennis#", Limits{}, ErrWildcardPosition},
		{"multi-level before text", "sport/#tennis", Limits{}, ErrWildcardPosition},
		{"single-level inside level", "sport+", Limits{}, ErrWildcardPosition},
		{"single-level before text", "sport/+tennis", Limits{}, ErrWildcardPosition},
		{"double single-level", "++", Limits{}, ErrWildcardPosition},
		{"null character", "a/\x00", Limits{}, ErrNullCharacter},
		{"invalid UTF-8", "a/\xc3", Limits{}, ErrInvalidUTF8},
		{"over length limit", "a/b/c", Limits{MaxTopicLength: 4}, ErrTooLong},
		{"over level limit", "a/+/#", Limits{MaxLevels: 2}, ErrTooManyLevels},
		{"at level limit", "a/+/#", Limits{MaxLevels: 3}, nil},
		{"shared", "$share/group/sport/+", Limits{}, nil},
		{"shared multi-level", "$share/g/#", Limits{}, nil},
		{"shared levels count inner only", "$share/g/a/b", Limits{MaxLevels: 2}, nil},
		{"shared inner over level limit", "$share/g/a/b/c", Limits{MaxLevels: 2}, ErrTooManyLevels},
		{"shared empty group", "$share//sport", Limits{}, ErrShareName},
		{"shared group with plus", "$share/g+/sport", Limits{}, ErrShareName},
		{"shared group with hash", "$share/#/sport", Limits{}, ErrShareName},
		{"shared group with wildcard and no filter", "$share/g#", Limits{}, ErrShareName},
		{"shared group invalid UTF-8", "$share/\xff/a", Limits{}, ErrInvalidUTF8},
		{"shared group null", "$share/\x00/a", Limits{}, ErrNullCharacter},
		{"shared without filter", "$share/group", Limits{}, ErrShareFilter},
		{"shared with empty filter", "$share/group/", Limits{}, ErrShareFilter},
		{"shared prefix only", "$share/", Limits{}, ErrShareFilter},
		{"shared inner invalid", "$share/g/a#", Limits{}, ErrWildcardPosition},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateFilter(c.filter, c.lim)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("ValidateFilter(%q) = %v, want %v", c.filter, err, c.want)
			}
		})
	}
}

func TestParseShare(t *testing.T) {
	cases := []struct {
		filter, group, inner string
		ok                   bool
	}{
		{"$share/g/a/b", "g", "a/b", true},
		{"$share/g/#", "g", "#", true},
		{"$share//a", "", "a", true},
		{"$share/g/", "g", "", true},
		{"$share/g", "", "", false},
		{"$share", "", "", false},
		{"a/b", "", "", false},
		{"$SHARE/g/a", "", "", false},
	}
	for _, c := range cases {
		g, in, ok := ParseShare(c.filter)
		if g != c.group || in != c.inner || ok != c.ok {
			t.Errorf("ParseShare(%q) = %q, %q, %v; want %q, %q, %v", c.filter, g, in, ok, c.group, c.inner, c.ok)
		}
	}
}

// matchCases are the examples of section 4.7 of MQTT 5.0 and the $-topic rules.
var matchCases = []struct {
	filter, topic string
	want          bool
}{
	// 4.7.1.2 multi-level wildcard
	{"sport/tennis/player1/#", "sport/tennis/player1", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
	{"sport/#", "sport", true},
	{"#", "sport/tennis", true},
	{"#", "/", true},
	{"sport/tennis/#", "sport/tennis", true},
	{"sport/tennis/#", "sport/tennisX", false},
	{"sport/tennis/#", "sport", false},
	// 4.7.1.3 single-level wildcard
	{"sport/tennis/+", "sport/tennis/player1", true},
	{"sport/tennis/+", "sport/tennis/player2", true},
	{"sport/tennis/+", "sport/tennis/player1/ranking", false},
	{"sport/+", "sport", false},
	{"sport/+", "sport/", true},
	{"+/+", "/finance", true},
	{"/+", "/finance", true},
	{"+", "/finance", false},
	{"+", "finance", true},
	{"+/tennis/#", "sport/tennis/player1", true},
	{"+/tennis/#", "sport/tennis", true},
	// exact and empty levels
	{"sport/tennis", "sport/tennis", true},
	{"sport/tennis", "sport/Tennis", false},
	{"sport/tennis", "sport/tennis/", false},
	{"sport/tennis/", "sport/tennis", false},
	{"a//b", "a//b", true},
	{"a/+/b", "a//b", true},
	{"/", "/", true},
	{"+/+", "/", true},
	{"+", "", false},
	// 4.7.2 topics beginning with $
	{"#", "$SYS/broker", false},
	{"+/monitor/Clients", "$SYS/monitor/Clients", false},
	{"$SYS/#", "$SYS/monitor/Clients", true},
	{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
	{"$SYS/#", "$SYS", true},
	{"+", "$SYS", false},
	{"a/#", "a/$b", true},
	{"a/+", "a/$b", true},
}

func TestMatchFilter(t *testing.T) {
	for _, c := range matchCases {
		if got := MatchFilter(c.filter, c.topic); got != c.want {
			t.Errorf("MatchFilter(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
}

func BenchmarkValidateName(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := ValidateName("tenant12/site3/dev17/metric4", Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
