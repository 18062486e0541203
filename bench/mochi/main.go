// Command mochi serves Mochi MQTT (github.com/mochi-mqtt/server/v2) on one TCP address with every
// client allowed, so bench/compare.sh can measure it beside PromptMQ and Mosquitto (MOCHI=1).
// It lives in its own Go module so Mochi and its dependencies never enter the product's go.mod.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:29885", "TCP address to serve MQTT on")
	flag.Parse()
	if err := run(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "mochi:", err)
		os.Exit(1)
	}
}

func run(addr string) error {
	server := mqtt.New(&mqtt.Options{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err := server.AddHook(new(auth.AllowHook), nil); err != nil {
		return fmt.Errorf("allow-all hook: %w", err)
	}
	if err := server.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})); err != nil {
		return fmt.Errorf("listener %s: %w", addr, err)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	if err := server.Serve(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	<-stop
	return server.Close()
}
