package telemetry

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func startServer(t *testing.T, opts ServerOptions) (*Server, string) {
	t.Helper()
	opts.Bind = "127.0.0.1:0"
	s := NewServer(opts)
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return s, "http://" + s.Addr().String()
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body), resp.Header
}

func TestServerEndpoints(t *testing.T) {
	r := NewRegistry().WithoutRuntime()
	r.Counter("app_things_total", "Things done.", "", func() uint64 { return 42 })
	s, base := startServer(t, ServerOptions{Path: "/prom", Registry: r, Version: "v1.2.3"})

	code, body, hdr := get(t, base+"/prom")
	if code != 200 || !strings.Contains(body, "\napp_things_total 42\n") || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Errorf("/prom: %d %q %q", code, hdr.Get("Content-Type"), body)
	}

	code, body, _ = get(t, base+"/health")
	var h Health
	if err := json.Unmarshal([]byte(body), &h); err != nil || code != 200 || h.Status != "ok" || h.Version != "v1.2.3" || h.UptimeSeconds <= 0 {
		t.Errorf("/health: %d %q (%v)", code, body, err)
	}

	// Not ready until told, ready, then not ready again as shutdown begins.
	for _, step := range []struct {
		set  *bool
		want int
	}{{nil, 503}, {ptr(true), 200}, {ptr(false), 503}} {
		if step.set != nil {
			s.SetReady(*step.set)
		}
		if code, body, _ := get(t, base+"/ready"); code != step.want {
			t.Errorf("/ready: %d %q, want %d", code, body, step.want)
		}
	}

	if code, body, _ := get(t, base+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/: %d", code)
	}
	if code, _, _ := get(t, base+"/debug/pprof/cmdline"); code != 200 {
		t.Errorf("/debug/pprof/cmdline: %d", code)
	}
}

func ptr[T any](v T) *T { return &v }

// metrics.enabled = false leaves the caller a nil *Server; every method is a no-op.
func TestNilServerDoesNothing(t *testing.T) {
	var s *Server
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.SetReady(true)
	if s.Addr() != nil {
		t.Error("nil server has an address")
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestListenReportsTheKey(t *testing.T) {
	s := NewServer(ServerOptions{Bind: "256.0.0.1:1"})
	if err := s.Listen(); err == nil || !strings.Contains(err.Error(), "metrics.bind") {
		t.Errorf("err = %v, want it to name metrics.bind", err)
	}
}
