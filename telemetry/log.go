package telemetry

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// LevelTrace is below slog.LevelDebug for per-packet detail too verbose even for debugging.
const LevelTrace = slog.Level(-8)

// ParseLevel reads a configured level name: trace, debug, info, warn or error, in any case.
func ParseLevel(name string) (slog.Level, error) {
	switch strings.ToLower(name) {
	case "trace":
		return LevelTrace, nil
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q; allowed: trace, debug, info, warn, error", name)
}

// NewLogger returns a logger writing to w at the given level, in format "json" or "text" (logfmt).
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: nameTraceLevel}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("unknown log format %q; allowed: json, text", format)
}

// nameTraceLevel prints LevelTrace as TRACE; slog would print it as DEBUG-4.
func nameTraceLevel(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.LevelKey && len(groups) == 0 {
		if lvl, ok := a.Value.Any().(slog.Level); ok && lvl == LevelTrace {
			a.Value = slog.StringValue("TRACE")
		}
	}
	return a
}
