package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/engine"
	"github.com/x0a1b/promptmq/telemetry"
)

// reloader applies SIGHUP: it loads the configuration again (file and flags, as at start)
// and hands the broker what may change while clients stay connected: the password file,
// the ACL file, the TLS certificates and the log level. A reload that fails changes
// nothing and says why in the log.
type reloader struct {
	load    func() (conf.Config, error)
	level   *slog.LevelVar
	logger  *slog.Logger
	hangups chan os.Signal
}

// newReloader starts catching SIGHUP at once, so a SIGHUP sent after the start-up line is
// never the default action (which ends the process).
func newReloader(load func() (conf.Config, error), level *slog.LevelVar, logger *slog.Logger) *reloader {
	r := &reloader{load: load, level: level, logger: logger, hangups: make(chan os.Signal, 1)}
	signal.Notify(r.hangups, syscall.SIGHUP)
	return r
}

func (r *reloader) stop() { signal.Stop(r.hangups) }

// run reloads b on every SIGHUP until ctx ends.
func (r *reloader) run(ctx context.Context, b *engine.Broker) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.hangups:
			r.reload(b)
		}
	}
}

func (r *reloader) reload(b *engine.Broker) {
	r.logger.Info("SIGHUP: reloading configuration")
	cfg, err := r.load()
	if err != nil {
		r.logger.Error("reload failed; keeping the old settings", "err", err)
		return
	}
	level, err := telemetry.ParseLevel(cfg.Log.Level)
	if err != nil {
		r.logger.Error("reload failed; keeping the old settings", "err", err)
		return
	}
	if err := b.Reload(cfg); err != nil {
		r.logger.Error("reload failed; keeping the old settings", "err", err)
		return
	}
	r.level.Set(level)
	r.logger.Info("reload complete", "log-level", cfg.Log.Level)
}

// newReloadableLogger is telemetry.NewLogger with a level that SIGHUP can change: the
// handler is built at the lowest level and a LevelVar filters in front of it.
func newReloadableLogger(w io.Writer, cfg *conf.Config) (*slog.Logger, *slog.LevelVar, error) {
	level, err := telemetry.ParseLevel(cfg.Log.Level)
	if err != nil {
		return nil, nil, err
	}
	inner, err := telemetry.NewLogger(w, "trace", cfg.Log.Format)
	if err != nil {
		return nil, nil, err
	}
	var v slog.LevelVar
	v.Set(level)
	return slog.New(levelHandler{level: &v, inner: inner.Handler()}), &v, nil
}

// levelHandler passes on the records at or above a level that can change at run time.
type levelHandler struct {
	level *slog.LevelVar
	inner slog.Handler
}

func (h levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level.Level() && h.inner.Enabled(ctx, l)
}

func (h levelHandler) Handle(ctx context.Context, r slog.Record) error { return h.inner.Handle(ctx, r) }

func (h levelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return levelHandler{level: h.level, inner: h.inner.WithAttrs(attrs)}
}

func (h levelHandler) WithGroup(name string) slog.Handler {
	return levelHandler{level: h.level, inner: h.inner.WithGroup(name)}
}
