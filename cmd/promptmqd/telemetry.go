package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/engine"
	"github.com/x0a1b/promptmq/telemetry"
)

// startTelemetry registers the broker's metrics and starts the HTTP side server (/metrics,
// /health, /ready, /debug/pprof/) when metrics.enabled; otherwise it returns a nil server,
// whose methods do nothing, and the broker never reads the clock for metrics. It runs before
// the MQTT listeners open so /health answers during recovery while /ready says 503.
func startTelemetry(cfg *conf.Config, b *engine.Broker, logger *slog.Logger) (*telemetry.Server, error) {
	b.SetVersion(version)
	if !cfg.Metrics.Enabled {
		return nil, nil
	}
	reg := telemetry.NewRegistry()
	b.Instrument(reg)
	srv := telemetry.NewServer(telemetry.ServerOptions{Bind: cfg.Metrics.Bind, Path: cfg.Metrics.Path, Registry: reg, Version: version, Logger: logger})
	if err := srv.Listen(); err != nil {
		return nil, err
	}
	logger.Info("listening", "transport", "http", "addr", srv.Addr().String(), "metrics", cfg.Metrics.Path)
	go func() {
		if err := srv.Serve(); err != nil {
			logger.Error("metrics server stopped", "err", err)
		}
	}()
	return srv, nil
}

// readyUntilDone marks the broker ready (its listeners are open) and not ready again as soon
// as shutdown begins, before clients are disconnected, so a load balancer stops sending new
// ones first.
func readyUntilDone(ctx context.Context, srv *telemetry.Server) {
	srv.SetReady(true)
	go func() {
		<-ctx.Done()
		srv.SetReady(false)
	}()
}

// stopTelemetry stops the side server once the broker has stopped, giving a scrape in
// progress a moment to finish.
func stopTelemetry(srv *telemetry.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
}
