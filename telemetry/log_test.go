package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestNewLoggerFormatsAndLevels(t *testing.T) {
	cases := []struct {
		level, format string
		logAt         slog.Level
		want          string // substring of the output, "" when nothing may be written
	}{
		{"info", "text", slog.LevelInfo, "level=INFO msg=hello"},
		{"info", "text", slog.LevelDebug, ""},
		{"DEBUG", "TEXT", slog.LevelDebug, "level=DEBUG"},
		{"trace", "text", LevelTrace, "level=TRACE msg=hello"},
		{"debug", "text", LevelTrace, ""},
		{"warn", "json", slog.LevelWarn, `"level":"WARN"`},
		{"warn", "json", slog.LevelInfo, ""},
		{"trace", "json", LevelTrace, `"level":"TRACE"`},
		{"error", "json", slog.LevelError, `"msg":"hello"`},
	}
	for _, tc := range cases {
		var out bytes.Buffer
		logger, err := NewLogger(&out, tc.level, tc.format)
		if err != nil {
			t.Fatalf("NewLogger(%q, %q): %v", tc.level, tc.format, err)
		}
		logger.Log(context.Background(), tc.logAt, "hello", "k", 1)
		got := out.String()
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("level %s format %s logging at %v: got %q, want %q", tc.level, tc.format, tc.logAt, got, tc.want)
		}
		if tc.format == "json" && got != "" && !json.Valid([]byte(got)) {
			t.Errorf("json output is not JSON: %q", got)
		}
	}
}

func TestNewLoggerRejectsUnknownNames(t *testing.T) {
	if _, err := NewLogger(&bytes.Buffer{}, "verbose", "text"); err == nil || !strings.Contains(err.Error(), "trace, debug, info, warn, error") {
		t.Errorf("unknown level: err = %v, want the allowed levels", err)
	}
	if _, err := NewLogger(&bytes.Buffer{}, "info", "xml"); err == nil || !strings.Contains(err.Error(), "json, text") {
		t.Errorf("unknown format: err = %v, want the allowed formats", err)
	}
}

// A group attribute named "level" is the caller's data, not the record's level.
func TestTraceNameOnlyForRecordLevel(t *testing.T) {
	var out bytes.Buffer
	logger, _ := NewLogger(&out, "trace", "text")
	logger.WithGroup("g").Log(context.Background(), LevelTrace, "m", "level", LevelTrace)
	if got := out.String(); !strings.Contains(got, "level=TRACE") || !strings.Contains(got, "g.level=DEBUG-4") {
		t.Errorf("got %q", got)
	}
}
