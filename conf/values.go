package conf

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// This file converts values between their TOML or command-line spelling and the typed fields of
// Config. Every conversion error is a sentence meant to be read after the key path.

const byteUnitList = "B, KiB, MiB, GiB, TiB, KB, MB, GB, TB"

// parseBytes reads "4096", "64MiB", "1 GB".
func parseBytes(s string) (int64, error) {
	text := strings.TrimSpace(s)
	lower := strings.ToLower(text)
	// Decimal units are accepted because people write "1GB"; the output always uses binary units.
	// The binary suffixes come first so "kib" is not read as "b".
	units := []struct {
		suffix string
		factor int64
	}{
		{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
		{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
		{"b", 1},
	}
	factor := int64(1)
	for _, u := range units {
		if strings.HasSuffix(lower, u.suffix) {
			factor = u.factor
			text = strings.TrimSpace(text[:len(text)-len(u.suffix)])
			break
		}
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a byte size; write an integer or a number with a unit (%s), such as \"64MiB\"", s, byteUnitList)
	}
	if n > math.MaxInt64/factor || n < math.MinInt64/factor {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * factor, nil
}

// formatBytes writes the largest binary unit that divides n exactly, so the output reads as people
// write sizes and still round-trips.
func formatBytes(n int64) string {
	for _, u := range []struct {
		suffix string
		factor int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.factor == 0 {
			return strconv.FormatInt(n/u.factor, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// formatDuration drops the zero minutes and seconds time.Duration.String writes ("168h0m0s" → "168h").
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// describe names a decoded TOML value for an error message: `integer 30`, `string "abc"`.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("float %v", v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	case map[string]any:
		return "a table"
	case []any, []map[string]any:
		return "an array"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// set stores a decoded TOML value (string, int64, bool, ...) into the key's field of c.
func (k Key) set(c *Config, v any) error {
	switch field := k.field(c).(type) {
	case *string:
		if list, isList := v.([]any); isList && k.Path == "cluster.peers" {
			return setList(field, list)
		}
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("expected a string, got %s", describe(v))
		}
		*field = k.canonical(s)
		return nil
	case *bool:
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("expected true or false, got %s", describe(v))
		}
		*field = b
		return nil
	case *time.Duration:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("expected a duration string such as \"30s\", \"5m\" or \"168h\", got %s", describe(v))
		}
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not a duration; write it like \"30s\", \"5m\" or \"168h\"", s)
		}
		*field = d
		return nil
	}
	n, err := k.integer(v)
	if err != nil {
		return err
	}
	switch field := k.field(c).(type) {
	case *int:
		if n < math.MinInt || n > math.MaxInt {
			return fmt.Errorf("%d is out of range", n)
		}
		*field = int(n)
	case *int64:
		*field = n
	}
	return nil
}

// integer reads an integer key's value, or a byte size given as integer or string.
func (k Key) integer(v any) (int64, error) {
	switch v := v.(type) {
	case int64:
		return v, nil
	case string:
		if k.Kind == KindBytes {
			return parseBytes(v)
		}
	}
	if k.Kind == KindBytes {
		return 0, fmt.Errorf("expected a byte size such as 4096 or \"64MiB\", got %s", describe(v))
	}
	return 0, fmt.Errorf("expected an integer, got %s", describe(v))
}

// canonical returns the schema's spelling of an enumerated value matched case-insensitively, so
// "normal" and "NORMAL" both load; an unknown value is kept for Validate to report.
func (k Key) canonical(s string) string {
	for _, a := range k.Allowed {
		if strings.EqualFold(a, s) {
			return a
		}
	}
	return s
}

// setText stores a command-line spelling of the value: the text is typed by the key's kind, then
// stored as if it came from TOML, so both sources share one set of rules and messages.
func (k Key) setText(c *Config, text string) error {
	switch k.Kind {
	case KindInt:
		n, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", text)
		}
		return k.set(c, n)
	case KindBool:
		b, err := strconv.ParseBool(strings.TrimSpace(text))
		if err != nil {
			return fmt.Errorf("%q is not true or false", text)
		}
		return k.set(c, b)
	default: // strings, durations and byte sizes are parsed from text by set itself
		return k.set(c, text)
	}
}

// number returns an integer-like field's value (durations in nanoseconds) for range checks.
func (k Key) number(c *Config) (int64, bool) {
	switch field := k.field(c).(type) {
	case *int:
		return int64(*field), true
	case *int64:
		return *field, true
	case *time.Duration:
		return int64(*field), true
	}
	return 0, false
}

// Value returns the key's value in c as plain text, the way it is typed on the command line: "0.0.0.0:1883",
// "64MiB", "30s", "true".
func (k Key) Value(c *Config) string {
	switch field := k.field(c).(type) {
	case *string:
		return *field
	case *bool:
		return strconv.FormatBool(*field)
	case *time.Duration:
		return formatDuration(*field)
	}
	n, _ := k.number(c)
	if k.Kind == KindBytes {
		return formatBytes(n)
	}
	return strconv.FormatInt(n, 10)
}

// literal returns the key's value in c as a TOML literal.
func (k Key) literal(c *Config) string {
	text := k.Value(c)
	switch k.Kind {
	case KindString, KindDuration:
		return quote(text)
	case KindBytes:
		if _, err := strconv.ParseInt(text, 10, 64); err != nil {
			return quote(text) // carries a unit
		}
	}
	return text
}

// quote writes a TOML basic string. strconv.Quote is not used because its \x escapes are not TOML.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// setList stores a TOML array of strings as the comma-separated form the flag takes, so a list of
// addresses reads naturally in TOML and still has one command-line spelling.
func setList(field *string, list []any) error {
	parts := make([]string, 0, len(list))
	for _, item := range list {
		s, ok := item.(string)
		if !ok {
			return fmt.Errorf("expected an array of strings, got an element %s", describe(item))
		}
		parts = append(parts, strings.TrimSpace(s))
	}
	*field = strings.Join(parts, ",")
	return nil
}
