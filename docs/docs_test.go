// Package docs holds the user documentation (Markdown); its tests keep the documents true to the
// code: the configuration reference is the schema's, every key is documented, each start-up error
// the troubleshooting page explains is one the code can print, every metric the monitoring page
// names is one the broker exports, and every relative link leads to a file.
package docs

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/x0a1b/promptmq/conf"
)

var update = flag.Bool("update", false, "rewrite the generated parts of the documents")

const begin, end = "<!-- BEGIN CONFIG REFERENCE (generated) -->\n", "<!-- END CONFIG REFERENCE -->"

func TestConfigurationReference(t *testing.T) {
	const doc = "configuration.md"
	data, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i, j := strings.Index(text, begin), strings.Index(text, end)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the markers %q and %q", doc, begin, end)
	}
	want := conf.Reference()
	if got := text[i+len(begin) : j]; got != want {
		if !*update {
			t.Fatalf("%s's reference differs from the schema; run go test ./docs -run TestConfigurationReference -update", doc)
		}
		if err := os.WriteFile(doc, []byte(text[:i+len(begin)]+want+text[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range conf.Keys() {
		if !strings.Contains(want, "| `"+k.Name()+"` | `--"+k.Flag()+"` |") {
			t.Errorf("reference lacks %s", k.Path)
		}
	}
}

// goSources returns the text of the product's non-test Go files.
func goSources(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			b.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Each "### `message`" heading of the troubleshooting page quotes text the code prints, so a
// reworded error fails here instead of leaving the page explaining a message nobody sees.
func TestTroubleshootingMessagesExist(t *testing.T) {
	data, err := os.ReadFile("troubleshooting.md")
	if err != nil {
		t.Fatal(err)
	}
	headings := regexp.MustCompile("(?m)^### `([^`]+)`").FindAllStringSubmatch(string(data), -1)
	if len(headings) < 10 {
		t.Fatalf("troubleshooting.md explains %d messages; its headings must be ### `message`", len(headings))
	}
	src := goSources(t)
	for _, h := range headings {
		// A %-verb or a ... in the heading stands for a value; every literal piece must be in the code.
		for _, piece := range regexp.MustCompile(`%[a-z]|\.\.\.|<[a-z-]+>`).Split(h[1], -1) {
			if piece = strings.TrimSpace(piece); piece != "" && !strings.Contains(src, piece) {
				t.Errorf("troubleshooting.md explains %q, but no Go source contains %q", h[1], piece)
			}
		}
	}
}

// Every promptmq_ metric the monitoring page names is registered by the code.
func TestMonitoringMetricsExist(t *testing.T) {
	data, err := os.ReadFile("monitoring.md")
	if err != nil {
		t.Fatal(err)
	}
	src := goSources(t)
	names := regexp.MustCompile(`promptmq_[a-z0-9_]+`).FindAllString(string(data), -1)
	if len(names) < 15 {
		t.Fatalf("monitoring.md names %d metrics", len(names))
	}
	for _, name := range names {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !strings.Contains(src, `"`+base+`"`) {
			t.Errorf("monitoring.md names %s, which no Go source registers", name)
		}
	}
}

// Relative links in every document lead to a file or directory of the repository.
func TestLinks(t *testing.T) {
	docs, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, "../README.md")
	link := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(data), -1) {
			target := m[1]
			if strings.Contains(target, "://") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(doc), target)); err != nil {
				t.Errorf("%s links to %s: %v", doc, target, err)
			}
		}
	}
}
