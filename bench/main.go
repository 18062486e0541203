// Command bench is the load generator anyone can point at any MQTT broker
// (3.1.1 or 5.0) to check PromptMQ's performance claims on their own
// machine: throughput in fan-in, pairs and fan-out shapes, end-to-end
// latency at a fixed rate, memory per idle connection and connection rate,
// with lost, duplicated and out-of-order messages counted on every run,
// and, given -broker-pid, the broker's CPU and memory read from /proc so
// that brokers compare per CPU-second even when the generator saturates.
//
// It owns only the client side: a hand-written client on raw TCP using
// the packets codec, encoding every ready packet into one buffer and one
// write, and reading many packets per syscall.
//
//	go run ./bench -addr 127.0.0.1:1883 -scenario pairs -qos 1 -pairs 100
//	go run ./bench summarize results.jsonl mosquitto promptmq
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"time"

	"github.com/x0a1b/promptmq/packets"
)

// config is everything a run varies, filled from the flags.
type config struct {
	addr        string
	scenario    string
	label       string
	version     byte
	qos         byte
	size        int
	inflight    int
	window      int
	duration    time.Duration
	warmup      time.Duration
	publishers  int
	pairs       int
	subscribers int
	rate        int
	conns       int
	sources     int
	workers     int
	brokerPID   int
	prefix      string
	readSize    int
	jsonOnly    bool
	row         string
	round       int
	hold        time.Duration
}

var scenarios = []string{"fanin", "pairs", "fanout", "latency", "conns", "connrate"}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:1883", "broker `HOST:PORT`")
	fs.StringVar(&c.scenario, "scenario", "pairs", "one of "+strings.Join(scenarios, ", "))
	fs.StringVar(&c.label, "label", "", "name of the broker in the output (default: the address)")
	mqtt := fs.String("mqtt", "5", "protocol version: 3.1.1 or 5")
	qos := fs.Int("qos", 0, "QoS of publishes and subscriptions: 0, 1 or 2")
	fs.IntVar(&c.size, "size", 64, "payload bytes (at least 20: publisher, sequence and send time)")
	fs.IntVar(&c.inflight, "inflight", 16, "unacknowledged QoS 1/2 publishes per publisher")
	fs.IntVar(&c.window, "window", 500, "messages per subscriber sent but not yet received (end-to-end flow control)")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "measured time")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "load before the measured time")
	fs.IntVar(&c.publishers, "publishers", 16, "fanin: publishers to one wildcard subscriber")
	fs.IntVar(&c.pairs, "pairs", 100, "pairs and latency: publisher/subscriber pairs")
	fs.IntVar(&c.subscribers, "subscribers", 1000, "fanout: subscribers of one publisher's topic")
	fs.IntVar(&c.rate, "rate", 20000, "latency: total messages per second across the pairs")
	fs.IntVar(&c.conns, "conns", 10000, "conns: idle connections to hold")
	fs.IntVar(&c.sources, "sources", 8, "loopback source addresses 127.0.0.1..N for conns and connrate")
	fs.IntVar(&c.workers, "workers", 8, "conns and connrate: concurrent connecting clients")
	fs.IntVar(&c.brokerPID, "broker-pid", 0, "broker process to sample in /proc (CPU seconds, RSS)")
	fs.StringVar(&c.prefix, "topic-prefix", "", "topic prefix (default: bench/<unique>)")
	fs.IntVar(&c.readSize, "read-buffer", 64<<10, "bytes read per syscall by subscribers")
	fs.BoolVar(&c.jsonOnly, "json", false, "print only the JSON line")
	fs.StringVar(&c.row, "row", "", "name of the comparison row, copied into the JSON line (compare.sh)")
	fs.DurationVar(&c.hold, "hold", 0, "conns: keep the idle connections this long after measuring (to profile the broker)")
	fs.IntVar(&c.round, "round", 0, "round of the comparison, copied into the JSON line (compare.sh)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch *mqtt {
	case "3.1.1", "311", "4":
		c.version = packets.V311
	case "5", "5.0":
		c.version = packets.V5
	default:
		return c, fmt.Errorf("-mqtt %q: want 3.1.1 or 5", *mqtt)
	}
	if *qos < 0 || *qos > 2 {
		return c, fmt.Errorf("-qos %d: want 0, 1 or 2", *qos)
	}
	c.qos = byte(*qos)
	if c.size < payloadHeader {
		return c, fmt.Errorf("-size %d: at least %d bytes carry the sequence and send time", c.size, payloadHeader)
	}
	if c.inflight < 1 || c.inflight > 65535 {
		return c, fmt.Errorf("-inflight %d: want 1..65535", c.inflight)
	}
	if c.window < 2 {
		return c, fmt.Errorf("-window %d: want at least 2", c.window)
	}
	if !validScenario(c.scenario) {
		return c, fmt.Errorf("-scenario %q: want one of %s", c.scenario, strings.Join(scenarios, ", "))
	}
	if c.label == "" {
		c.label = c.addr
	}
	if c.prefix == "" {
		c.prefix = fmt.Sprintf("bench/%x", time.Now().UnixNano()&0xFFFFFFFF)
	}
	c.sources = max(c.sources, 1)
	c.workers = max(c.workers, 1)
	return c, nil
}

func validScenario(name string) bool {
	for _, s := range scenarios {
		if s == name {
			return true
		}
	}
	return false
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "summarize" {
		if err := runSummary(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(2)
		}
		return
	}
	c, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	res, err := run(ctx, c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if !c.jsonOnly {
		printTable(os.Stdout, &res)
	}
	printJSON(os.Stdout, &res)
	if res.Lost+res.Duplicated+res.OutOfOrder > 0 || res.Errors != "" {
		os.Exit(3)
	}
}

// run executes the configured scenario.
func run(ctx context.Context, c config) (result, error) {
	res := newResult(c)
	var err error
	switch c.scenario {
	case "conns":
		err = runConns(ctx, c, &res)
	case "connrate":
		err = runConnRate(ctx, c, &res)
	default:
		err = runFlow(ctx, c, &res)
	}
	res.finish()
	return res, err
}

// meter samples the clocks a measured window needs: wall time, the
// generator's CPU and the broker's /proc numbers.
type meter struct {
	pid    int
	wall   time.Time
	self   time.Duration
	broker procSample
	err    error
}

func startMeter(pid int) meter {
	m := meter{pid: pid, wall: time.Now(), self: selfCPU()}
	if pid > 0 {
		m.broker, m.err = readProc(pid)
	}
	return m
}

// stop fills the result's time, CPU and RSS fields for the window since m.
func (m meter) stop(res *result) {
	end := startMeter(m.pid)
	res.Seconds = end.wall.Sub(m.wall).Seconds()
	res.GeneratorCPU = (end.self - m.self).Seconds()
	res.GeneratorCores = runtime.NumCPU()
	res.GeneratorUtil = res.GeneratorCPU / res.Seconds / float64(res.GeneratorCores)
	// A generator using nearly all the cores it may run on was the limit.
	res.GeneratorLimited = res.GeneratorUtil >= 0.9
	if m.pid > 0 {
		if m.err != nil || end.err != nil {
			res.addError(fmt.Errorf("broker sampling: %w", firstErr(m.err, end.err)))
			return
		}
		res.BrokerCPU = (end.broker.cpu - m.broker.cpu).Seconds()
		res.BrokerUtil = res.BrokerCPU / res.Seconds
		res.BrokerRSSKB = end.broker.rss / 1024
	}
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
