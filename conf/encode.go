package conf

import (
	"fmt"
	"strings"
)

// TOML returns the configuration as a TOML document, every key present, one table per section, each
// key preceded by its documentation. Loading the output yields c again.
func (c Config) TOML() ([]byte, error) {
	var b strings.Builder
	section := ""
	for _, k := range keys() {
		if s := k.Section(); s != section {
			if section != "" {
				b.WriteByte('\n')
			}
			fmt.Fprintf(&b, "[%s]\n", s)
			section = s
		}
		fmt.Fprintf(&b, "# %s\n%s = %s\n", k.Doc, k.Name(), k.literal(&c))
	}
	return []byte(b.String()), nil
}

// Reference returns the Markdown reference of every key: one table per section with the flag, the
// default, the values allowed and what the key does. README.md embeds it; TestReadmeReference keeps
// the two equal.
func Reference() string {
	defaults := Default()
	var b strings.Builder
	section := ""
	for _, k := range keys() {
		if s := k.Section(); s != section {
			if section != "" {
				b.WriteByte('\n')
			}
			fmt.Fprintf(&b, "#### `[%s]`\n\n| key | flag | default | allowed | description |\n|---|---|---|---|---|\n", s)
			section = s
		}
		def := k.literal(&defaults)
		fmt.Fprintf(&b, "| `%s` | `--%s` | `%s` | %s | %s |\n", k.Name(), k.Flag(), def, k.allowedText(), k.Doc)
	}
	return b.String()
}

// allowedText is the "allowed" column of the reference.
func (k Key) allowedText() string {
	var text string
	switch {
	case k.Allowed != nil:
		text = "`" + strings.Join(k.Allowed, "`, `") + "`"
	case k.Kind == KindBool:
		text = "`true`, `false`"
	case k.Addr:
		text = "host:port"
	case k.URLPath:
		text = "a path starting with `/`"
	case k.Max != 0:
		text = k.rangeText()
		if k.Kind == KindDuration {
			text = "duration " + text
		}
	case k.Kind == KindInt:
		text = "any integer"
	case k.Form != "":
		text = k.Form
	case k.Kind == KindString:
		text = "a path"
	}
	if k.Zero != "" && (k.Kind == KindString || k.Min == 0) {
		zero := "0"
		if k.Kind == KindString {
			zero = `""`
		}
		text += "; " + zero + " = " + k.Zero
	}
	if k.Kind == KindBytes {
		text += "; bytes or a size such as `\"64MiB\"`"
	}
	return text
}
