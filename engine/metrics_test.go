package engine

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/packets"
	"github.com/x0a1b/promptmq/telemetry"
)

// instrumentedBroker starts a broker with its metrics registered and the HTTP side server on
// loopback ports, as promptmqd wires them, and returns the MQTT address and the base URL.
func instrumentedBroker(t *testing.T, edit func(*conf.Config)) (*Broker, string, string) {
	t.Helper()
	cfg := conf.Default()
	cfg.Server.Bind = "127.0.0.1:0"
	cfg.Storage.DataDir = ""
	cfg.MQTT.SysInterval = 0 // tests that want $SYS ask for it
	if edit != nil {
		edit(&cfg)
	}
	b, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	b.SetVersion("test")
	reg := telemetry.NewRegistry()
	b.Instrument(reg)
	srv := telemetry.NewServer(telemetry.ServerOptions{Bind: "127.0.0.1:0", Registry: reg, Version: "test"})
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return b, serveTestBroker(t, b), "http://" + srv.Addr().String()
}

// scrape fetches the exposition and parses its samples by series (`name{labels}`).
func scrape(t *testing.T, base string) (map[string]float64, []byte) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	samples := make(map[string]float64)
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(strings.TrimSpace(line[sp+1:]), 64)
		if err != nil {
			t.Fatalf("bad sample %q: %v", line, err)
		}
		samples[line[:sp]] = v
	}
	return samples, body
}

// 100 QoS 1 publishes to 3 subscribers: exactly 100 received and 300 published.
func TestMetricsCountKnownTraffic(t *testing.T) {
	b, addr, base := instrumentedBroker(t, nil)
	const subscribers, publishes = 3, 100
	var subs []*received
	for i := range subscribers {
		r := newReceived()
		c, _ := connect5(t, addr, &paho.Connect{ClientID: fmt.Sprintf("sub%d", i), CleanStart: true}, r, nil)
		if _, err := c.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "metrics/#", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
		subs = append(subs, r)
	}
	pub, _ := connect5(t, addr, &paho.Connect{ClientID: "pub", CleanStart: true}, nil, nil)
	for i := range publishes {
		if _, err := pub.Publish(ctx5(t), &paho.Publish{Topic: "metrics/t", QoS: 1, Payload: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range subs {
		for range publishes {
			r.next(t)
		}
	}
	got, body := scrape(t, base)
	want := map[string]float64{
		"promptmq_messages_received_total":                            publishes,
		"promptmq_messages_published_total":                           subscribers * publishes,
		"promptmq_packets_received_total{type=\"publish\"}":           publishes,
		"promptmq_packets_received_total{type=\"connect\"}":           subscribers + 1,
		"promptmq_packets_received_total{type=\"subscribe\"}":         subscribers,
		"promptmq_packets_sent_total{type=\"publish\"}":               subscribers * publishes,
		"promptmq_packets_sent_total{type=\"puback\"}":                publishes,
		"promptmq_packets_sent_total{type=\"connack\"}":               subscribers + 1,
		"promptmq_packets_sent_total{type=\"suback\"}":                subscribers,
		"promptmq_connections_total":                                  subscribers + 1,
		"promptmq_connections_current":                                subscribers + 1,
		"promptmq_sessions_current{state=\"online\"}":                 subscribers + 1,
		"promptmq_sessions_current{state=\"offline\"}":                0,
		"promptmq_subscriptions_current":                              subscribers,
		"promptmq_messages_retained":                                  0,
		"promptmq_messages_dropped_total{reason=\"queue_full\"}":      0,
		"promptmq_message_processing_duration_seconds_count":          publishes / processingSampleEvery,
		"promptmq_protocol_errors_total{reason=\"malformed_packet\"}": 0,
		"promptmq_auth_failures_total":                                0,
	}
	for series, v := range want {
		if g, ok := got[series]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", series, g, ok, v)
		}
	}
	// Bytes: at least the PUBLISH packets themselves went each way.
	if got["promptmq_bytes_received_total"] < publishes*12 || got["promptmq_bytes_sent_total"] < subscribers*publishes*12 {
		t.Errorf("bytes received %v sent %v: too few", got["promptmq_bytes_received_total"], got["promptmq_bytes_sent_total"])
	}
	if got["promptmq_system_goroutines"] < 1 || got["promptmq_system_memory_usage_bytes"] < 1<<20 || got["go_goroutines"] < 1 {
		t.Error("system metrics missing")
	}
	checkWithPromtool(t, body)
	_ = b
}

// A PUBLISH no one subscribes to is counted as dropped for no_subscribers.
func TestMetricsNoSubscribers(t *testing.T) {
	_, addr, base := instrumentedBroker(t, nil)
	pub, _ := connect5(t, addr, &paho.Connect{ClientID: "pub", CleanStart: true}, nil, nil)
	for range 3 {
		if _, err := pub.Publish(ctx5(t), &paho.Publish{Topic: "nobody/here", QoS: 1, Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := scrape(t, base)
	if v := got[`promptmq_messages_dropped_total{reason="no_subscribers"}`]; v != 3 {
		t.Errorf("no_subscribers = %v, want 3", v)
	}
}

func TestSentPacketsCountsEachPacketOfABuffer(t *testing.T) {
	var s Stats
	var buf []byte
	buf = (&packets.Ack{Type: packets.TypePuback, Version: packets.V5, PacketID: 1}).Append(buf)
	buf = packets.AppendPingresp(buf)
	buf = (&packets.Ack{Type: packets.TypePubrec, Version: packets.V311, PacketID: 2}).Append(buf)
	buf = (&packets.Disconnect{Version: packets.V5, Reason: packets.ServerShuttingDown}).Append(buf)
	s.sentPackets(buf)
	s.sentPackets(buf[:1]) // a torn buffer is ignored, never read past
	for typ, want := range map[packets.Type]uint64{packets.TypePuback: 1, packets.TypePingresp: 1, packets.TypePubrec: 1, packets.TypeDisconnect: 1, packets.TypePublish: 0} {
		if got := s.PacketsSent[typ].Load(); got != want {
			t.Errorf("%v: %d, want %d", typ, got, want)
		}
	}
}

// The $SYS topics are published at start and again every sys-interval; a subscriber sees
// the uptime change.
func TestSysTopicsUpdate(t *testing.T) {
	_, addr, _ := instrumentedBroker(t, func(c *conf.Config) { c.MQTT.SysInterval = time.Second })
	r := newReceived()
	c, _ := connect5(t, addr, &paho.Connect{ClientID: "sys", CleanStart: true}, r, nil)
	if _, err := c.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$SYS/#"}}}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	uptimes := map[string]bool{}
	deadline := time.After(10 * time.Second)
	// The last topic of a tick, seen after a second uptime, ends a live publication.
	for done := false; !done; {
		select {
		case p := <-r.ch:
			seen[p.Topic] = string(p.Payload)
			switch p.Topic {
			case "$SYS/broker/uptime":
				uptimes[string(p.Payload)] = true
			case "$SYS/broker/load/connections/15min":
				done = len(uptimes) >= 2
			}
		case <-deadline:
			t.Fatalf("within 10s saw uptimes %v and topics %v", uptimes, seen)
		}
	}
	for topic, want := range map[string]string{
		"$SYS/broker/version":             "promptmq test",
		"$SYS/broker/clients/connected":   "1",
		"$SYS/broker/subscriptions/count": "1",
	} {
		if seen[topic] != want {
			t.Errorf("%s = %q, want %q", topic, seen[topic], want)
		}
	}
	for _, topic := range []string{"$SYS/broker/messages/received", "$SYS/broker/bytes/sent", "$SYS/broker/retained messages/count", "$SYS/broker/load/bytes/sent/15min"} {
		if _, ok := seen[topic]; !ok {
			t.Errorf("%s not published", topic)
		}
	}
}

// The acceptance check as an operator runs it: mosquitto_sub -t '$SYS/#' -v shows the topics
// and their values change.
func TestSysTopicsWithMosquittoSub(t *testing.T) {
	path, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mosquitto_sub is missing (Debian package mosquitto-clients) and CI=true")
		}
		t.Skip("mosquitto_sub is missing: install the Debian package mosquitto-clients")
	}
	_, addr, _ := instrumentedBroker(t, func(c *conf.Config) { c.MQTT.SysInterval = time.Second })
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command(path, "-h", host, "-p", port, "-t", "$SYS/broker/uptime", "-v", "-C", "3", "-W", "10")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mosquitto_sub: %v\n%s", err, out)
	}
	values := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		topic, value, _ := strings.Cut(sc.Text(), " ")
		if topic != "$SYS/broker/uptime" {
			t.Errorf("unexpected line %q", sc.Text())
		}
		values[value] = true
	}
	if len(values) < 2 {
		t.Errorf("uptime did not change over 3 messages:\n%s", out)
	}
}

// checkWithPromtool runs `promtool check metrics` on a scrape (Debian package prometheus,
// which .ci/run installs); it skips when promtool is missing, except in CI.
func checkWithPromtool(t *testing.T, exposition []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is missing (Debian package prometheus) and CI=true")
		}
		t.Skip("promtool is missing: install the Debian package prometheus")
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
