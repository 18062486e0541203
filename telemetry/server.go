package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"
)

// ServerOptions configure the HTTP side server.
type ServerOptions struct {
	// Bind is the listen address (metrics.bind); tests pass 127.0.0.1:0.
	Bind string
	// Path serves the Prometheus text exposition (metrics.path), /metrics when empty.
	Path     string
	Registry *Registry
	// Version is reported by /health.
	Version string
	Logger  *slog.Logger
}

// Server is the HTTP side server: the Prometheus exposition, /health (liveness), /ready
// (readiness) and /debug/pprof/. A nil *Server is valid and does nothing, so a caller with
// metrics.enabled = false holds a nil one and calls the same methods.
//
// Readiness starts false: the process owner sets it once recovery has finished and the
// MQTT listeners are open, and clears it when shutdown begins, so a load balancer stops
// sending clients before the broker stops accepting them.
type Server struct {
	opts    ServerOptions
	started time.Time
	ready   atomic.Bool
	http    *http.Server

	mu sync.Mutex // guards ln
	ln net.Listener
}

// NewServer builds a server; Listen opens its socket.
func NewServer(opts ServerOptions) *Server {
	if opts.Path == "" {
		opts.Path = "/metrics"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = NewRegistry()
	}
	s := &Server{opts: opts, started: time.Now()}
	mux := http.NewServeMux()
	mux.HandleFunc(opts.Path, s.serveMetrics)
	mux.HandleFunc("/health", s.serveHealth)
	mux.HandleFunc("/ready", s.serveReady)
	// Registered on our own mux: net/http/pprof also adds itself to http.DefaultServeMux,
	// which nothing in this process serves.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	return s
}

// Listen opens the listener of Bind, separately from Serve so the caller learns the address
// (and a busy port stops start-up) before anything runs.
func (s *Server) Listen() error {
	if s == nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.opts.Bind)
	if err != nil {
		return fmt.Errorf("listen on metrics.bind %s: %w", s.opts.Bind, err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	return nil
}

// Addr is the address the server listens on, nil before Listen.
func (s *Server) Addr() net.Addr {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Serve answers requests until Shutdown; it listens first if Listen was not called.
func (s *Server) Serve() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
		s.mu.Lock()
		ln = s.ln
		s.mu.Unlock()
	}
	if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}

// Shutdown stops the server, letting requests in progress finish until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if s == nil {
		return nil
	}
	if err := s.http.Shutdown(ctx); err != nil {
		return fmt.Errorf("metrics server shutdown: %w", err)
	}
	return nil
}

// SetReady sets what /ready answers.
func (s *Server) SetReady(ready bool) {
	if s != nil {
		s.ready.Store(ready)
	}
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if err := s.opts.Registry.WritePrometheus(w); err != nil {
		s.opts.Logger.Debug("metrics scrape not delivered", "remote", r.RemoteAddr, "err", err)
	}
}

// Health is the body of /health.
type Health struct {
	Status        string  `json:"status"`
	Version       string  `json:"version"`
	UptimeSeconds float64 `json:"uptime_seconds"`
}

// serveHealth answers liveness: the process runs and serves HTTP. It is 200 even while not
// ready, so an orchestrator does not kill a broker that is still recovering.
func (s *Server) serveHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, Health{Status: "ok", Version: s.opts.Version, UptimeSeconds: time.Since(s.started).Seconds()})
}

func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	if s.ready.Load() {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
