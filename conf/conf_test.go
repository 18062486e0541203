package conf

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the reference in README.md from the schema")

// writeConfig writes a TOML document to a temporary file and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "promptmq.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func problemsOf(t *testing.T, err error) []Problem {
	t.Helper()
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
	}
	return verr.Problems
}

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	loaded, err := Load("")
	if err != nil || !reflect.DeepEqual(loaded, c) {
		t.Fatalf(`Load("") = %+v, %v; want the defaults`, loaded, err)
	}
}

// Every leaf field of Config has exactly one schema row, so no setting exists that the file, the
// flags, check-config or the reference cannot see.
func TestSchemaCoversConfig(t *testing.T) {
	var c Config
	owners := map[any]string{}
	for _, k := range Keys() {
		p := k.field(&c)
		if other, dup := owners[p]; dup {
			t.Errorf("%s and %s point at the same field", k.Path, other)
		}
		owners[p] = k.Path
		if k.Doc == "" {
			t.Errorf("%s has no documentation", k.Path)
		}
	}
	var walk func(v reflect.Value, name string)
	walk = func(v reflect.Value, name string) {
		if v.Kind() == reflect.Struct && v.Type() != reflect.TypeOf(time.Duration(0)) {
			for i := range v.NumField() {
				walk(v.Field(i), name+"."+v.Type().Field(i).Name)
			}
			return
		}
		if _, ok := owners[v.Addr().Interface()]; !ok {
			t.Errorf("field %s has no schema row", name)
		}
	}
	walk(reflect.ValueOf(&c).Elem(), "Config")
}

func TestFlagNames(t *testing.T) {
	want := map[string]string{
		"server.bind":                    "bind",
		"server.tls-bind":                "tls-bind",
		"storage.data-dir":               "data-dir",
		"mqtt.max-inflight":              "max-inflight",
		"log.level":                      "log-level",
		"metrics.bind":                   "metrics-bind",
		"storage.sqlite.cache-size":      "sqlite-cache-size",
		"storage.sqlite.synchronous":     "sqlite-synchronous",
		"storage.cleanup.batch-size":     "cleanup-batch-size",
		"auth.password-file":             "auth-password-file",
		"tls.require-client-cert":        "tls-require-client-cert",
		"storage.batch-size":             "batch-size",
		"mqtt.subscription-id-available": "subscription-id-available",
	}
	seen := map[string]string{}
	for _, k := range Keys() {
		if w, ok := want[k.Path]; ok && k.Flag() != w {
			t.Errorf("%s: flag %q, want %q", k.Path, k.Flag(), w)
		}
		if other, dup := seen[k.Flag()]; dup {
			t.Errorf("flag --%s names both %s and %s", k.Flag(), other, k.Path)
		}
		seen[k.Flag()] = k.Path
	}
}

func TestExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("examples/*.toml")
	if err != nil || len(files) < 6 {
		t.Fatalf("examples: %v, %v", files, err)
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, name := range []string{"development", "production", "high-throughput", "high-durability", "sqlite-tuning", "paho-testing"} {
		if _, err := os.Stat(filepath.Join("examples", name+".toml")); err != nil {
			t.Errorf("example %s is missing: %v", name, err)
		}
	}
}

// The Paho interoperability suites assume these settings of the broker under test.
func TestPahoExampleFitsTheSuites(t *testing.T) {
	c, err := Load("examples/paho-testing.toml")
	if err != nil {
		t.Fatal(err)
	}
	m := c.MQTT
	if !strings.HasSuffix(c.Server.Bind, ":1883") || m.KeepAlive != 60 || !c.Auth.AllowAnonymous || c.Storage.DataDir != "" ||
		m.MaxTopicAlias < 10 || !m.RetainAvailable || !m.WildcardAvailable || !m.SharedSubAvailable || !m.SubscriptionIDAvailable {
		t.Errorf("paho-testing.toml does not fit the suites: %+v", c)
	}
}

func TestExampleSettings(t *testing.T) {
	durable, err := Load("examples/high-durability.toml")
	if err != nil || durable.Storage.SQLite.Synchronous != "FULL" {
		t.Errorf("high-durability: synchronous %q, err %v", durable.Storage.SQLite.Synchronous, err)
	}
	prod, err := Load("examples/production.toml")
	if err != nil || prod.Auth.AllowAnonymous || prod.TLS.CertFile == "" || prod.Log.Format != "json" {
		t.Errorf("production: %+v, %v", prod, err)
	}
}

func TestLoadValues(t *testing.T) {
	c, err := Load(writeConfig(t, `
[log]
level = "DEBUG"
[server]
read-buffer = "64KiB"
write-buffer = 8192
ws-bind = ":8080"
[mqtt]
max-memory = "1 GB"
max-queued-bytes = "512b"
max-session-expiry = "1h30m"
queue-qos0 = true
[storage]
data-dir = ""
[storage.sqlite]
synchronous = "full"
journal-mode = "Wal"
mmap-size = 0
cache-size = 2000
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Log.Level = "debug"
	want.Server.ReadBuffer = 64 << 10
	want.Server.WriteBuffer = 8192
	want.Server.WSBind = ":8080"
	want.MQTT.MaxMemory = 1e9
	want.MQTT.MaxQueuedBytes = 512
	want.MQTT.MaxSessionExpiry = 90 * time.Minute
	want.MQTT.QueueQoS0 = true
	want.Storage.DataDir = ""
	want.Storage.SQLite.Synchronous = "FULL"
	want.Storage.SQLite.JournalMode = "WAL"
	want.Storage.SQLite.MmapSize = 0
	want.Storage.SQLite.CacheSize = 2000
	if !reflect.DeepEqual(c, want) {
		t.Errorf("loaded\n%+v\nwant\n%+v", c, want)
	}
}

// Each case is one bad document; every listed problem must be reported (key path and a substring of
// the message), and nothing else.
func TestLoadReportsEveryProblem(t *testing.T) {
	cases := []struct {
		name string
		toml string
		want []Problem // Msg is a substring
	}{
		{"misspelt key", "[storage.sqlite]\ncache-sise = 1\n",
			[]Problem{{"storage.sqlite.cache-sise", "unknown key; did you mean cache-size?"}}},
		{"enum", "[storage.sqlite]\nsynchronous = \"SOMETIMES\"\n",
			[]Problem{{"storage.sqlite.synchronous", `"SOMETIMES" is not allowed; allowed values: OFF, NORMAL, FULL, EXTRA`}}},
		{"three mistakes", "[mqtt]\nmax-qos = 3\nmax-infligth = 10\n[log]\nformat = \"xml\"\n",
			[]Problem{
				{"mqtt.max-infligth", "did you mean max-inflight?"},
				{"mqtt.max-qos", "3 is out of range; allowed: 0..2"},
				{"log.format", `"xml" is not allowed; allowed values: json, text`},
			}},
		{"key in the wrong section", "[server]\nmax-inflight = 10\n",
			[]Problem{{"server.max-inflight", "did you mean mqtt.max-inflight?"}}},
		{"key outside any section", "bind = \"127.0.0.1:1883\"\n",
			[]Problem{{"bind", "did you mean server.bind?"}}},
		{"misspelt section, children not repeated", "[sotrage]\ndata-dir = \"x\"\nbatch-size = 1\n",
			[]Problem{{"sotrage", "unknown section; did you mean [storage]?"}}},
		{"nothing close", "[log]\nzzzzzzzzzzzz = 1\n",
			[]Problem{{"log.zzzzzzzzzzzz", "unknown key"}}},
		{"unknown section far from any", "[federation]\nnodes = 3\n",
			[]Problem{{"federation", "unknown section"}}},
		{"cluster peers", "[cluster]\npeers = [\"10.0.0.2:7946\", \"nohost\"]\nnode-id = \"a.b\"\n",
			[]Problem{{"cluster.peers", `"nohost" is not host:port`}, {"cluster.node-id", "may hold only letters"}}},
		{"section given a value", "log = 3\n",
			[]Problem{{"log", "is a section; write it as a table [log]"}}},
		{"key given a table", "[mqtt.max-qos]\nx = 1\n",
			[]Problem{{"mqtt.max-qos", "expected an integer, got a table"}}},
		{"types", `
[server]
bind = 1883
read-timeout = 30
write-timeout = "ten seconds"
read-buffer = "4 parsecs"
write-buffer = 1.5
[mqtt]
max-qos = "two"
retain-available = "yes"
max-memory = true
[storage.cleanup]
batch-size = [1, 2]
`, []Problem{
			{"server.bind", "expected a string, got integer 1883"},
			{"server.read-timeout", `expected a duration string such as "30s", "5m" or "168h", got integer 30`},
			{"server.write-timeout", `"ten seconds" is not a duration`},
			{"server.read-buffer", `"4 parsecs" is not a byte size`},
			{"server.write-buffer", "expected a byte size such as 4096 or \"64MiB\", got float 1.5"},
			{"mqtt.max-qos", `expected an integer, got string "two"`},
			{"mqtt.retain-available", `expected true or false, got string "yes"`},
			{"mqtt.max-memory", "got boolean true"},
			{"storage.cleanup.batch-size", "got an array"},
		}},
		{"ranges", `
[server]
bind = "localhost"
ws-bind = "host:http"
metrics = 1
ws-path = "mqtt"
read-buffer = 10
connect-timeout = "-1s"
[mqtt]
max-inflight = 0
max-topic-alias = 70000
keep-alive = -1
max-packet-size = 8
max-session-expiry = "2000000h"
max-connections = -5
[storage]
batch-size = 0
[storage.sqlite]
busy-timeout = -1
[metrics]
bind = ""
path = "metrics"
[tls]
min-version = "1.0"
`, []Problem{
			{"server.metrics", "unknown key"},
			{"server.bind", `"localhost" is not host:port`},
			{"server.ws-bind", `has port "http"; a port is a number from 0 to 65535`},
			{"server.ws-path", `"mqtt" must start with /`},
			{"server.read-buffer", "10 is out of range; allowed: 64..64MiB"},
			{"server.connect-timeout", "-1s is out of range; allowed: >= 0s"},
			{"mqtt.max-connections", "-5 is out of range; allowed: >= 0"},
			{"mqtt.max-inflight", "0 is out of range; allowed: 1..65535"},
			{"mqtt.max-packet-size", "8 is out of range; allowed: 0 (the protocol maximum, 268435460) or 16..268435460"},
			{"mqtt.keep-alive", "-1 is out of range; allowed: 0..65535"},
			{"mqtt.max-topic-alias", "70000 is out of range"},
			{"mqtt.max-session-expiry", "2000000h is out of range; allowed: 0s..1193046h28m15s"},
			{"storage.batch-size", "0 is out of range; allowed: >= 1"},
			{"storage.sqlite.busy-timeout", "-1 is out of range"},
			{"metrics.bind", "is required; write host:port"},
			{"metrics.path", `"metrics" must start with /`},
			{"tls.min-version", `"1.0" is not allowed; allowed values: 1.2, 1.3`},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tc.toml))
			got := problemsOf(t, err)
			for _, w := range tc.want {
				found := false
				for _, p := range got {
					found = found || p.Key == w.Key && strings.Contains(p.Msg, w.Msg)
				}
				if !found {
					t.Errorf("missing problem %s: ...%s...", w.Key, w.Msg)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("got %d problems, want %d:\n%v", len(got), len(tc.want), err)
			}
		})
	}
}

func TestValidationErrorText(t *testing.T) {
	path := writeConfig(t, "[mqtt]\nmax-qos = 3\n")
	_, err := Load(path)
	if want := "invalid configuration in " + path + ": mqtt.max-qos: 3 is out of range; allowed: 0..2"; err.Error() != want {
		t.Errorf("one problem:\n got %q\nwant %q", err, want)
	}
	_, err = Load(writeConfig(t, "[mqtt]\nmax-qos = 3\nmax-inflight = 0\n"))
	if text := err.Error(); !strings.Contains(text, "(2 problems):\n  mqtt.max-qos: ") || !strings.Contains(text, "\n  mqtt.max-inflight: ") {
		t.Errorf("two problems: %q", text)
	}
	_, err = Load(writeConfig(t, "[log\n"))
	if problems := problemsOf(t, err); len(problems) != 1 || problems[0].Key != "" || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("syntax error: %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want os.ErrNotExist", err)
	}
}

func TestValidateJoinsKeys(t *testing.T) {
	cases := []struct {
		name   string
		change func(*Config)
		want   []string // key paths reported
	}{
		{"tls listener without certificate", func(c *Config) { c.Server.TLSBind = ":8883" }, []string{"tls.cert-file", "tls.key-file"}},
		{"wss listener without key", func(c *Config) { c.Server.WSSBind = ":8884"; c.TLS.CertFile = "c.pem" }, []string{"tls.key-file", "tls.key-file"}},
		{"certificate without key", func(c *Config) { c.TLS.CertFile = "c.pem" }, []string{"tls.key-file"}},
		{"client certificates without CA", func(c *Config) { c.TLS.RequireClientCert = true }, []string{"tls.require-client-cert"}},
		{"complete TLS", func(c *Config) {
			c.Server.TLSBind, c.TLS.CertFile, c.TLS.KeyFile, c.TLS.RequireClientCert, c.TLS.ClientCAFile = ":8883", "c", "k", true, "ca"
		}, nil},
	}
	for _, tc := range cases {
		c := Default()
		tc.change(&c)
		err := c.Validate()
		var keys []string
		if err != nil {
			for _, p := range problemsOf(t, err) {
				keys = append(keys, p.Key)
			}
		}
		if !reflect.DeepEqual(keys, tc.want) {
			t.Errorf("%s: problems at %v, want %v (%v)", tc.name, keys, tc.want, err)
		}
	}
}

func TestOverridesWinOverTheFile(t *testing.T) {
	path := writeConfig(t, "[storage.sqlite]\ncache-size = 100\nsynchronous = \"SOMETIMES\"\n")
	c, err := LoadWith(path,
		Override{Key: "storage.sqlite.cache-size", Value: "5000", Source: "--sqlite-cache-size"},
		Override{Key: "storage.sqlite.synchronous", Value: "full", Source: "--sqlite-synchronous"},
		Override{Key: "mqtt.queue-qos0", Value: "true", Source: "--queue-qos0"},
		Override{Key: "mqtt.max-memory", Value: "2GiB", Source: "--max-memory"},
		Override{Key: "server.write-timeout", Value: "1m", Source: "--write-timeout"},
	)
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.SQLite.CacheSize != 5000 || c.Storage.SQLite.Synchronous != "FULL" || !c.MQTT.QueueQoS0 ||
		c.MQTT.MaxMemory != 2<<30 || c.Server.WriteTimeout != time.Minute {
		t.Errorf("overrides not applied: %+v", c)
	}
}

func TestBadOverridesAreProblems(t *testing.T) {
	_, err := LoadWith(writeConfig(t, "[mqtt]\nmax-qos = 7\n"),
		Override{Key: "mqtt.max-inflight", Value: "many", Source: "--max-inflight"},
		Override{Key: "mqtt.queue-qos0", Value: "perhaps", Source: "--queue-qos0"},
		Override{Key: "mqtt.max-inflihgt", Value: "1", Source: "--max-inflihgt"},
		Override{Key: "storage.batch-size", Value: "0", Source: "--batch-size"},
	)
	want := []Problem{
		{"mqtt.max-inflight", `"many" is not an integer (from --max-inflight)`},
		{"mqtt.queue-qos0", `"perhaps" is not true or false (from --queue-qos0)`},
		{"mqtt.max-inflihgt", "unknown key mqtt.max-inflihgt; did you mean max-inflight? (from --max-inflihgt)"},
		{"mqtt.max-qos", "7 is out of range"},
		{"storage.batch-size", "0 is out of range"},
	}
	got := problemsOf(t, err)
	if len(got) != len(want) {
		t.Fatalf("got %v", err)
	}
	for i := range want {
		if got[i].Key != want[i].Key || !strings.Contains(got[i].Msg, want[i].Msg) {
			t.Errorf("problem %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

func TestTOMLRoundTrips(t *testing.T) {
	odd := Default()
	odd.Storage.DataDir = "C:\\data \"quoted\"\ttab\nline\x01ctl\x7f"
	odd.MQTT.MaxPacketSize = 268435460
	odd.MQTT.MaxMemory = 3 << 40
	odd.Server.ReadBuffer = 1000
	odd.MQTT.MaxMessageExpiry = 90*time.Minute + 1500*time.Millisecond
	odd.Storage.Cleanup.MaxMessageAge = 0
	odd.Storage.SQLite.CacheSize = -1
	odd.Auth.PasswordFile = "/etc/promptmq/päss\r"
	for _, c := range []Config{Default(), odd} {
		text, err := c.TOML()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Load(writeConfig(t, string(text)))
		if err != nil {
			t.Fatalf("output does not load: %v\n%s", err, text)
		}
		if !reflect.DeepEqual(back, c) {
			t.Errorf("round trip changed the configuration:\n got %+v\nwant %+v\n%s", back, c, text)
		}
	}
	text, _ := Default().TOML()
	for _, want := range []string{"[storage.sqlite]\n", "cache-size = -65536\n", `max-queued-bytes = "16MiB"`, `max-message-age = "168h"`, `check-interval = "5m"`, `batch-interval = "2ms"`} {
		if !strings.Contains(string(text), want) {
			t.Errorf("TOML output lacks %q", want)
		}
	}
}

func TestByteSizes(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"4096", 4096, true}, {"64MiB", 64 << 20, true}, {"64mib", 64 << 20, true}, {"1GB", 1e9, true},
		{"1 KiB", 1024, true}, {"10kb", 10000, true}, {"2TiB", 2 << 40, true}, {"3tb", 3e12, true},
		{"7MB", 7e6, true}, {"100B", 100, true}, {"1GiB", 1 << 30, true},
		{"", 0, false}, {"MiB", 0, false}, {"1.5MiB", 0, false}, {"12 parsecs", 0, false},
		{"99999999999TiB", 0, false}, {"-99999999999TiB", 0, false},
	}
	for _, tc := range cases {
		got, err := parseBytes(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	for n, want := range map[int64]string{0: "0", 1000: "1000", 4096: "4KiB", 16 << 20: "16MiB", 1 << 30: "1GiB", 5 << 40: "5TiB", 268435460: "268435460"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestDurationsFormatShort(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0s", 2 * time.Millisecond: "2ms", 5 * time.Minute: "5m",
		168 * time.Hour: "168h", 90 * time.Minute: "1h30m", 61 * time.Second: "1m1s", time.Hour + time.Second: "1h0m1s"} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestSetUnknownKey(t *testing.T) {
	c := Default()
	if err := c.Set("storage.sqlite.cache-sise", "1"); err == nil || !strings.Contains(err.Error(), "did you mean cache-size?") {
		t.Errorf("err = %v", err)
	}
	if err := c.Set("mqtt.max-inflight", "99999999999999999999"); err == nil {
		t.Error("an integer overflowing int64 was accepted")
	}
}

// The reference in README.md is the schema's: a key added to the schema, or a changed default, fails
// here until the README is regenerated with -update.
func TestReadmeReference(t *testing.T) {
	const begin, end = "<!-- BEGIN CONFIG REFERENCE (generated) -->\n", "<!-- END CONFIG REFERENCE -->"
	const readme = "../README.md"
	data, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i, j := strings.Index(text, begin), strings.Index(text, end)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the markers %q and %q", begin, end)
	}
	want := Reference()
	if got := text[i+len(begin) : j]; got != want {
		if !*update {
			t.Fatalf("README.md's configuration reference differs from the schema; run go test ./conf -run TestReadmeReference -update")
		}
		if err := os.WriteFile(readme, []byte(text[:i+len(begin)]+want+text[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range Keys() {
		if !strings.Contains(want, "| `"+k.Name()+"` | `--"+k.Flag()+"` |") {
			t.Errorf("reference lacks %s", k.Path)
		}
	}
}
