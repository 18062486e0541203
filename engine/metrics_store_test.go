package engine

import (
	"strconv"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/x0a1b/promptmq/conf"
)

// Durable traffic shows in the storage metrics: every QoS 1 publish to an offline persistent
// subscriber is one add_deliveries operation inside some group commit.
func TestMetricsStorage(t *testing.T) {
	dir := t.TempDir()
	_, addr, base := instrumentedBroker(t, func(c *conf.Config) { c.Storage.DataDir = dir })
	expiry := uint32(3600)
	sub, _ := connect5(t, addr, &paho.Connect{ClientID: "durable", CleanStart: true, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}, nil, nil)
	if _, err := sub.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "store/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	sub.Disconnect(&paho.Disconnect{})
	pub, _ := connect5(t, addr, &paho.Connect{ClientID: "pub", CleanStart: true}, nil, nil)
	const publishes = 50
	for i := range publishes {
		// The PUBACK comes after the commit, so the counters are final when Publish returns.
		if _, err := pub.Publish(ctx5(t), &paho.Publish{Topic: "store/t", QoS: 1, Payload: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	got, body := scrape(t, base)
	if g := got[`promptmq_storage_operations_total{op="add_deliveries"}`]; g != publishes {
		t.Errorf("add_deliveries = %v, want %d", g, publishes)
	}
	if got[`promptmq_storage_operations_total{op="save_subscription"}`] < 1 || got[`promptmq_storage_operations_total{op="save_session"}`] < 1 {
		t.Error("session and subscription writes not counted")
	}
	if n := got["promptmq_storage_batch_size_count"]; n < 1 || got["promptmq_storage_batch_size_sum"] < publishes {
		t.Errorf("batch histogram count %v sum %v", n, got["promptmq_storage_batch_size_sum"])
	}
	if got["promptmq_storage_commit_duration_seconds_count"] != got["promptmq_storage_batch_size_count"] {
		t.Error("one commit duration per batch")
	}
	if got["promptmq_storage_size_bytes"] < 4096 {
		t.Errorf("storage size %v", got["promptmq_storage_size_bytes"])
	}
	checkWithPromtool(t, body)
}
