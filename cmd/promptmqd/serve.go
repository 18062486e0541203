package main

import (
	"context"
	"log/slog"

	"github.com/x0a1b/promptmq/conf"
)

// serve runs the broker until ctx is cancelled (SIGINT or SIGTERM), then shuts it down gracefully
// and returns. It returns an error only when the broker cannot start or stop cleanly.
//
// This placeholder waits for ctx; the engine replaces its body with the real broker.
func serve(ctx context.Context, cfg *conf.Config, logger *slog.Logger) error {
	_ = cfg
	<-ctx.Done()
	logger.Info("broker stopped")
	return nil
}
