package main

import (
	"log/slog"
	"runtime"

	"github.com/x0a1b/promptmq/conf"
)

// startupMessage is the first line the broker logs; tests and operators wait for it.
const startupMessage = "promptmqd starting"

// logStartup writes the one line an operator needs to know what is running: the build, where it
// listens, where its data lives and what an acknowledged message survives.
func logStartup(logger *slog.Logger, cfg *conf.Config) {
	logger.Info(startupMessage,
		"version", version,
		"commit", commit,
		"go", runtime.Version(),
		"listeners", listeners(cfg),
		"data-dir", dataDir(cfg),
		"durability", durability(cfg),
		"synchronous", cfg.Storage.SQLite.Synchronous,
		"journal-mode", cfg.Storage.SQLite.JournalMode,
		"batch-size", cfg.Storage.BatchSize,
		"batch-interval", cfg.Storage.BatchInterval,
	)
}

// listeners lists every address the process will listen on, with its protocol.
func listeners(cfg *conf.Config) []string {
	out := []string{"mqtt://" + cfg.Server.Bind}
	if cfg.Server.TLSBind != "" {
		out = append(out, "mqtts://"+cfg.Server.TLSBind)
	}
	if cfg.Server.WSBind != "" {
		out = append(out, "ws://"+cfg.Server.WSBind+cfg.Server.WSPath)
	}
	if cfg.Server.WSSBind != "" {
		out = append(out, "wss://"+cfg.Server.WSSBind+cfg.Server.WSPath)
	}
	if cfg.Metrics.Enabled {
		out = append(out, "http://"+cfg.Metrics.Bind+cfg.Metrics.Path)
	}
	return out
}

func dataDir(cfg *conf.Config) string {
	if cfg.Storage.DataDir == "" {
		return "(in memory)"
	}
	return cfg.Storage.DataDir
}

// durability says in words what an acknowledged QoS 1/2 message survives with these settings.
func durability(cfg *conf.Config) string {
	sqlite := cfg.Storage.SQLite
	switch {
	case cfg.Storage.DataDir == "":
		return "none: in memory, lost on restart"
	case sqlite.Synchronous == "OFF" || sqlite.JournalMode == "OFF" || sqlite.JournalMode == "MEMORY":
		return "weak: may be lost if the process or machine stops"
	case sqlite.Synchronous == "FULL" || sqlite.Synchronous == "EXTRA":
		return "survives a killed process and power loss"
	case sqlite.JournalMode == "WAL":
		return "survives a killed process; the last commits may be lost on power loss"
	default:
		return "survives a killed process; a power loss may corrupt the newest transactions"
	}
}
