package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/engine"
)

// serve runs the broker until ctx is cancelled (SIGINT or SIGTERM), then shuts it down
// gracefully and returns. It returns an error only when the broker cannot start.
func serve(ctx context.Context, cfg *conf.Config, logger *slog.Logger, hup *reloader) error {
	b, err := engine.New(engine.Options{Config: *cfg, Logger: logger})
	if err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	leave, err := joinCluster(cfg, b, logger)
	if err != nil {
		b.Shutdown()
		return err
	}
	defer leave()
	tel, err := startTelemetry(cfg, b, logger)
	if err != nil {
		return err
	}
	defer stopTelemetry(tel)
	if err := b.Listen(); err != nil {
		return err
	}
	for _, a := range b.Addrs() {
		logger.Info("listening", "transport", "tcp", "addr", a.String())
	}
	go hup.run(ctx, b)
	// engine.New has run recovery and Listen opened every listener: only now is the broker ready.
	stopped := newNotifier(os.Getenv, logger).announce(ctx, b.Addrs())
	readyUntilDone(ctx, tel)
	err = b.Serve(ctx)
	stopped()
	logger.Info("broker stopped")
	return err
}
