package main

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/telemetry"
)

func TestDurabilityInWords(t *testing.T) {
	cases := []struct {
		dataDir, synchronous, journal string
		want                          string
	}{
		{"", "FULL", "WAL", "none"},
		{"d", "OFF", "WAL", "weak"},
		{"d", "NORMAL", "MEMORY", "weak"},
		{"d", "FULL", "WAL", "power loss"},
		{"d", "EXTRA", "DELETE", "power loss"},
		{"d", "NORMAL", "WAL", "the last commits may be lost on power loss"},
		{"d", "NORMAL", "DELETE", "may corrupt"},
	}
	for _, tc := range cases {
		cfg := conf.Default()
		cfg.Storage.DataDir, cfg.Storage.SQLite.Synchronous, cfg.Storage.SQLite.JournalMode = tc.dataDir, tc.synchronous, tc.journal
		if got := durability(&cfg); !strings.Contains(got, tc.want) {
			t.Errorf("%+v: %q, want ...%s...", tc, got, tc.want)
		}
	}
}

func TestStartupLineListsListeners(t *testing.T) {
	cfg := conf.Default()
	cfg.Server.TLSBind, cfg.Server.WSBind, cfg.Server.WSSBind = ":8883", ":8080", ":8884"
	want := []string{"mqtt://0.0.0.0:1883", "mqtts://:8883", "ws://:8080/mqtt", "wss://:8884/mqtt", "http://0.0.0.0:9090/metrics"}
	if got := listeners(&cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("listeners = %v, want %v", got, want)
	}
	var out bytes.Buffer
	logger, err := telemetry.NewLogger(&out, "info", "text")
	if err != nil {
		t.Fatal(err)
	}
	logStartup(logger, &cfg)
	for _, w := range []string{`msg="promptmqd starting"`, "data-dir=./data", "synchronous=NORMAL", "journal-mode=WAL", "batch-interval=2ms", "mqtts://:8883"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("start-up line lacks %s: %s", w, out.String())
		}
	}
}
