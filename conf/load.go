package conf

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/BurntSushi/toml"
)

// Problem is one thing wrong with a configuration: the dotted key path ("storage.sqlite.cache-size",
// or "" for the file as a whole) and a sentence saying what is wrong and what is allowed.
type Problem struct {
	Key string
	Msg string
}

func (p Problem) String() string {
	if p.Key == "" {
		return p.Msg
	}
	return p.Key + ": " + p.Msg
}

// ValidationError lists every problem found in a configuration, so that one run shows them all.
type ValidationError struct {
	File     string // the file loaded, "" for defaults and flags only
	Problems []Problem
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid configuration")
	if e.File != "" {
		b.WriteString(" in " + e.File)
	}
	if len(e.Problems) == 1 {
		return b.String() + ": " + e.Problems[0].String()
	}
	fmt.Fprintf(&b, " (%d problems):", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

// Override is a value set from outside the file, such as a command-line flag; overrides apply after
// the file and win over it.
type Override struct {
	Key    string // dotted key path
	Value  string // as typed on the command line
	Source string // where it came from, for messages: "--sqlite-cache-size"
}

// Load reads a TOML file over the defaults and validates the result. With path "" it returns the
// defaults. Every problem is reported in one *ValidationError.
func Load(path string) (Config, error) { return LoadWith(path) }

// LoadWith is Load followed by overrides, validated once at the end so a flag can repair a file's
// value and every problem, from the file or the flags, is reported together.
func LoadWith(path string, overrides ...Override) (Config, error) {
	cfg := Default()
	var problems []Problem
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("read configuration: %w", err)
		}
		problems = cfg.decode(string(data))
	}
	for _, o := range overrides {
		if err := cfg.Set(o.Key, o.Value); err != nil {
			problems = append(problems, Problem{Key: o.Key, Msg: fmt.Sprintf("%v (from %s)", err, o.Source)})
		}
	}
	var verr *ValidationError
	if err := cfg.Validate(); errors.As(err, &verr) {
		problems = append(problems, verr.Problems...)
	}
	if len(problems) > 0 {
		return Config{}, &ValidationError{File: path, Problems: problems}
	}
	return cfg, nil
}

// Set assigns one key from its command-line spelling: Set("storage.sqlite.cache-size", "5000").
// It does not validate ranges; call Validate when done.
func (c *Config) Set(path, value string) error {
	k, ok := lookup(path)
	if !ok {
		return fmt.Errorf("unknown key %s%s", path, suggest(path))
	}
	return k.setText(c, value)
}

// decode applies a TOML document to c and returns the problems found, in file order.
func (c *Config) decode(text string) []Problem {
	var raw map[string]any
	md, err := toml.Decode(text, &raw)
	if err != nil {
		return []Problem{{Msg: err.Error()}}
	}
	isSection := map[string]bool{}
	for _, s := range sections() {
		isSection[s] = true
	}
	var problems []Problem
	var rejected []string // paths already reported, whose children would only repeat the problem
	for _, tk := range md.Keys() {
		path := strings.Join(tk, ".")
		if underAny(path, rejected) {
			continue
		}
		typ := md.Type(tk...)
		if isSection[path] {
			if typ != "Hash" {
				problems = append(problems, Problem{Key: path, Msg: fmt.Sprintf("is a section; write it as a table [%s]", path)})
				rejected = append(rejected, path)
			}
			continue
		}
		k, known := lookup(path)
		if !known {
			what := "unknown key"
			if typ == "Hash" || typ == "ArrayHash" {
				what = "unknown section"
			}
			problems = append(problems, Problem{Key: path, Msg: what + suggest(path)})
			rejected = append(rejected, path)
			continue
		}
		if err := k.set(c, valueAt(raw, tk)); err != nil {
			problems = append(problems, Problem{Key: path, Msg: err.Error()})
			rejected = append(rejected, path)
		}
	}
	return problems
}

func underAny(path string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(path, p+".") {
			return true
		}
	}
	return false
}

// valueAt walks a decoded document along a key path; every step but the last is a table because
// the parent path was accepted as a section.
func valueAt(doc map[string]any, path []string) any {
	var v any = doc
	for _, name := range path {
		table, _ := v.(map[string]any)
		v = table[name]
	}
	return v
}

// suggest returns "; did you mean X?" for the known key or section nearest to an unknown path, or
// "" when nothing is close. A known name in another section wins over a near miss in the same one
// ("[server] max-inflight" suggests mqtt.max-inflight); inside the same section the name alone is
// shown ("cache-sise" suggests cache-size).
func suggest(path string) string {
	section, name := "", path
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		section, name = path[:i], path[i+1:]
	}
	best, bestScore := "", len(name)/3+2 // anything scoring this or more is too far to help
	consider := func(candidate string, score int) {
		if score < bestScore {
			best, bestScore = candidate, score
		}
	}
	for _, k := range keys() {
		score := distance(name, k.Name())
		if k.Section() == section {
			consider(k.Name(), score)
		} else {
			consider(k.Path, score+1)
		}
	}
	for _, s := range sections() {
		consider("["+s+"]", distance(path, s))
	}
	if best == "" {
		return ""
	}
	return "; did you mean " + best + "?"
}

// distance is the Levenshtein edit distance between two short ASCII names.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
