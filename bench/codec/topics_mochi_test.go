package codec

import (
	"fmt"
	"strconv"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"
	mochipackets "github.com/mochi-mqtt/server/v2/packets"
	"github.com/x0a1b/promptmq/topics"
	"github.com/x0a1b/promptmq/topics/topicstest"
)

// The topics comparison: PromptMQ's Router against Mochi's TopicsIndex on the same
// workload (topicstest: filters 70% exact, 20% '+', 10% '#', 4 to 6 levels; publish
// topics of 4 levels), so the ratios come from one run on one machine.

var topicsSizes = []int{10_000, 100_000}

func BenchmarkTopicsMatch(b *testing.B) {
	for _, n := range topicsSizes {
		w := topicstest.New(n, 4096, 1)
		b.Run(fmt.Sprintf("promptmq/subs=%d", n), func(b *testing.B) {
			r := topics.NewRouter(topics.Limits{})
			for i, f := range w.Filters {
				if _, err := r.Subscribe(topics.Subscription{Client: w.Clients[i], Filter: f, Options: topics.SubOptions{QoS: 1}, ID: uint32(i)}); err != nil {
					b.Fatal(err)
				}
			}
			var m topics.Matches
			i, matches := 0, 0
			b.ReportAllocs()
			for b.Loop() {
				m.Reset()
				r.Match(w.Topics[i&4095], 0, nil, &m)
				matches += len(m.Deliveries)
				i++
			}
			b.ReportMetric(float64(matches)/float64(i), "matches/op")
		})
		b.Run(fmt.Sprintf("mochi/subs=%d", n), func(b *testing.B) {
			x := mochi.NewTopicsIndex()
			for i, f := range w.Filters {
				x.Subscribe("c"+strconv.FormatUint(w.Clients[i], 10), mochipackets.Subscription{Filter: f, Qos: 1, Identifier: i})
			}
			i, matches := 0, 0
			b.ReportAllocs()
			for b.Loop() {
				subs := x.Subscribers(w.Topics[i&4095])
				matches += len(subs.Subscriptions)
				i++
			}
			b.ReportMetric(float64(matches)/float64(i), "matches/op")
		})
	}
}
