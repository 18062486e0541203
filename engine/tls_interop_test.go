package engine

import (
	"context"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/packets"
)

// TestInteropMosquittoPubTLS: Mosquitto's own client publishes over the TLS listener, trusting
// the broker through --cafile, and a subscriber receives the message (make interop).
func TestInteropMosquittoPubTLS(t *testing.T) {
	tool := needTool(t, "mosquitto_pub", "mosquitto-clients")
	p := newPKI(t)
	_, addrs := tlsBroker(t, p, nil)
	s := dialRaw(t, addrs["tcp"], packets.V311)
	s.mustConnect("interop-sub", nil)
	s.subscribe(1, 0, sub("interop/tls", 1))

	host, port := splitHostPort(t, addrs["tls"])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, version := range []string{"mqttv311", "mqttv5"} {
		out, err := exec.CommandContext(ctx, tool, "-h", host, "-p", port, "--cafile", p.server.pemPath,
			"-V", version, "-q", "1", "-t", "interop/tls", "-m", "hello over tls "+version).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub %s: %v\n%s", version, err, out)
		}
		if m := s.receive(); m.Payload != "hello over tls "+version {
			t.Errorf("received %q", m.Payload)
		}
	}
	// A client that does not trust the broker's CA refuses the handshake.
	other := newTestCA(t, p.dir, "unrelated-ca")
	if out, err := exec.CommandContext(ctx, tool, "-h", host, "-p", port, "--cafile", other.pemPath,
		"-t", "interop/tls", "-m", "x").CombinedOutput(); err == nil {
		t.Errorf("mosquitto_pub with an unrelated CA succeeded:\n%s", out)
	}
}

func splitHostPort(t testing.TB, addr string) (string, string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return host, port
}
