// Package codec compares the promptmq packets codec with the packet codecs
// of Mochi MQTT (github.com/mochi-mqtt/server/v2/packets) and Eclipse Paho
// (github.com/eclipse/paho.golang/packets, 5.0 only) on the same bytes, in
// one benchmark run. It is a separate module so that the product's go.mod
// never depends on the codecs it is measured against.
//
// TestSameFields checks that every codec decodes each benchmark packet to
// the same field values, and TestEncodersAgree that their encoders write
// packets meaning the same, so that the benchmarks compare equal work.
//
// The table of medians:
//
//	cd bench/codec
//	go test -run '^$' -bench . -count 10 ./ | tee bench.txt | go run ./cmd/benchtable
package codec
