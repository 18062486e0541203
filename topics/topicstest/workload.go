// Package topicstest generates the subscription and publish workload shared by the
// topics benchmarks and by the comparison benchmarks in bench/codec, so every router
// is measured on the same filters and topics.
package topicstest

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Workload is a set of subscriptions and of publish topics drawn from one vocabulary.
//
// Filters have 4 to 6 levels: 70% exact, 20% with one '+' at a random level, 10%
// ending in '#'. Publish topics have 4 levels. Every level draws from Vocab words, and
// Vocab grows with the number of subscriptions (Vocab^4 is about half of it), so a
// publish topic matches a handful of subscriptions at any scale, as in a real
// deployment, rather than none (vocabulary too large) or thousands (too small). Most of
// the matches come from '+' and '#' filters; the 5- and 6-level exact filters never
// match a 4-level topic, like subscriptions to other parts of a topic tree.
type Workload struct {
	Vocab   int
	Filters []string
	Clients []uint64 // Clients[i] subscribes to Filters[i]; about 4 filters per client
	Topics  []string
}

// levelPrefix names the words of each level, so the topics read like a real tree:
// tenant/site/device/metric/channel/key.
var levelPrefix = [...]string{"tenant", "site", "dev", "metric", "ch", "k"}

// New returns a deterministic workload of subs filters and topics publish topics.
func New(subs, topics int, seed uint64) *Workload {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	vocab := max(4, int(math.Round(math.Pow(float64(subs)/2, 0.25))))
	w := &Workload{Vocab: vocab, Filters: make([]string, subs), Clients: make([]uint64, subs), Topics: make([]string, topics)}
	clients := max(1, subs/4)
	var b strings.Builder
	word := func(level int) {
		b.WriteString(levelPrefix[level])
		b.WriteString(strconv.Itoa(rng.IntN(vocab)))
	}
	for i := range w.Filters {
		b.Reset()
		depth := 4 + rng.IntN(3)
		kind := rng.IntN(10) // 0..6 exact, 7..8 '+', 9 '#'
		plus := -1
		if kind == 7 || kind == 8 {
			plus = rng.IntN(depth)
		}
		for level := range depth {
			if level > 0 {
				b.WriteByte('/')
			}
			switch {
			case kind == 9 && level == depth-1:
				b.WriteByte('#')
			case level == plus:
				b.WriteByte('+')
			default:
				word(level)
			}
		}
		w.Filters[i] = b.String()
		w.Clients[i] = uint64(rng.IntN(clients)) + 1
	}
	for i := range w.Topics {
		b.Reset()
		for level := range 4 {
			if level > 0 {
				b.WriteByte('/')
			}
			word(level)
		}
		w.Topics[i] = b.String()
	}
	return w
}
