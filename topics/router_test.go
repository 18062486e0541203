package topics

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"
)

func mustSubscribe(t testing.TB, r *Router, s Subscription) bool {
	t.Helper()
	replaced, err := r.Subscribe(s)
	if err != nil {
		t.Fatalf("Subscribe(%+v): %v", s, err)
	}
	return replaced
}

func match(r *Router, topic string, publisher uint64, online func(uint64) bool) []Delivery {
	var m Matches
	r.Match(topic, publisher, online, &m)
	return m.Deliveries
}

func TestRouterMatchesSpecExamples(t *testing.T) {
	for _, c := range matchCases {
		if c.topic == "" {
			continue
		}
		r := NewRouter(Limits{})
		mustSubscribe(t, r, Subscription{Client: 7, Filter: c.filter})
		got := match(r, c.topic, 0, nil)
		if (len(got) == 1) != c.want || len(got) > 1 {
			t.Errorf("filter %q topic %q: got %v, want match %v", c.filter, c.topic, got, c.want)
		}
		// The same through a $share group.
		r = NewRouter(Limits{})
		mustSubscribe(t, r, Subscription{Client: 7, Filter: "$share/g/" + c.filter})
		got = match(r, c.topic, 0, nil)
		if (len(got) == 1 && got[0].Shared) != c.want || len(got) > 1 {
			t.Errorf("shared filter %q topic %q: got %v, want match %v", c.filter, c.topic, got, c.want)
		}
	}
}

func TestRouterMergesOverlapsOfOneClient(t *testing.T) {
	r := NewRouter(Limits{})
	mustSubscribe(t, r, Subscription{Client: 1, Filter: "a/b", Options: SubOptions{QoS: 0}, ID: 10})
	mustSubscribe(t, r, Subscription{Client: 1, Filter: "a/+", Options: SubOptions{QoS: 2}, ID: 11})
	mustSubscribe(t, r, Subscription{Client: 1, Filter: "#", Options: SubOptions{QoS: 1, RetainAsPublished: true}})
	mustSubscribe(t, r, Subscription{Client: 1, Filter: "a/#", Options: SubOptions{QoS: 1}, ID: 12})
	mustSubscribe(t, r, Subscription{Client: 2, Filter: "+/b", Options: SubOptions{QoS: 1}, ID: 20})
	got := match(r, "a/b", 0, nil)
	if len(got) != 2 {
		t.Fatalf("got %d deliveries %+v, want 2", len(got), got)
	}
	slices.SortFunc(got, func(a, b Delivery) int { return int(a.Client) - int(b.Client) })
	d := got[0]
	ids := slices.Sorted(slices.Values(d.IDs))
	if d.Client != 1 || d.QoS != 2 || !d.RetainAsPublished || d.Shared || !slices.Equal(ids, []uint32{10, 11, 12}) {
		t.Errorf("client 1 delivery %+v", d)
	}
	if d := got[1]; d.Client != 2 || d.QoS != 1 || d.RetainAsPublished || !slices.Equal(d.IDs, []uint32{20}) {
		t.Errorf("client 2 delivery %+v", d)
	}
}

func TestRouterNoLocal(t *testing.T) {
	r := NewRouter(Limits{})
	mustSubscribe(t, r, Subscription{Client: 1, Filter: "a/b", Options: SubOptions{NoLocal: true}})
	mustSubscribe(t, r, Subscription{Client: 2, Filter: "a/b", Options: SubOptions{NoLocal: true}})
	got := match(r, "a/b", 1, nil) // [MQTT-3.8.3-3]
	if len(got) != 1 || got[0].Client != 2 {
		t.Fatalf("got %+v, want only client 2", got)
	}
	// A client's other overlapping subscription without No Local still delivers.
	mustSubscribe(t, r, Subscription{Client: 1, Filter: "a/#", ID: 5})
	got = match(r, "a/b", 1, nil)
	if len(got) != 2 {
		t.Fatalf("got %+v, want clients 1 and 2", got)
	}
	for _, d := range got {
		if d.Client == 1 && !slices.Equal(d.IDs, []uint32{5}) {
			t.Errorf("client 1 got IDs %v, want only the non-No-Local subscription's", d.IDs)
		}
	}
}

func TestRouterReplaceAndUnsubscribe(t *testing.T) {
	r := NewRouter(Limits{})
	if mustSubscribe(t, r, Subscription{Client: 1, Filter: "a/+", Options: SubOptions{QoS: 0}, ID: 1}) {
		t.Fatal("first subscribe reported a replace")
	}
	mustSubscribe(t, r, Subscription{Client: 2, Filter: "a/+"})
	if !mustSubscribe(t, r, Subscription{Client: 1, Filter: "a/+", Options: SubOptions{QoS: 2}, ID: 9}) { // [MQTT-3.8.4-3]
		t.Fatal("second subscribe did not report a replace")
	}
	if r.Count() != 2 {
		t.Fatalf("Count = %d, want 2", r.Count())
	}
	for _, d := range match(r, "a/x", 0, nil) {
		if d.Client == 1 && (d.QoS != 2 || !slices.Equal(d.IDs, []uint32{9})) {
			t.Fatalf("replaced subscription delivers %+v", d)
		}
	}
	if r.Unsubscribe(1, "a/b") || r.Unsubscribe(3, "a/+") || r.Unsubscribe(1, "x/y/z") || r.Unsubscribe(1, "a/+/#") {
		t.Fatal("Unsubscribe of an absent subscription reported true")
	}
	if !r.Unsubscribe(1, "a/+") || r.Unsubscribe(1, "a/+") {
		t.Fatal("Unsubscribe should succeed once")
	}
	if got := match(r, "a/x", 0, nil); len(got) != 1 || got[0].Client != 2 {
		t.Fatalf("after unsubscribe got %+v", got)
	}
	r.UnsubscribeAll(2, []string{"a/+", "never/subscribed"})
	if r.Count() != 0 {
		t.Fatalf("Count = %d after unsubscribing everything", r.Count())
	}
	assertEmpty(t, r)
}

// assertEmpty checks that pruning left no node behind.
func assertEmpty(t *testing.T, r *Router) {
	t.Helper()
	for i, sh := range append(r.shards[:], r.wild) {
		if !sh.root.empty() {
			t.Fatalf("shard %d root not empty after removing every subscription", i)
		}
		if sh.nodes.Load() != nil || sh.nodesLive != 0 || sh.nodesUsed != 0 {
			t.Fatalf("shard %d node table not empty (%d nodes) after removing every subscription", i, sh.nodesLive)
		}
		if sh.exact.Load() != nil || sh.exactCount != 0 {
			t.Fatalf("shard %d exact index not empty (%d filters) after removing every subscription", i, sh.exactCount)
		}
	}
}

func TestRouterSubscribeErrors(t *testing.T) {
	r := NewRouter(Limits{MaxLevels: 3})
	cases := []struct {
		s    Subscription
		want error
	}{
		{Subscription{Filter: "a/#/b"}, ErrMultiLevelNotEnd},
		{Subscription{Filter: "a/b/c/d"}, ErrTooManyLevels},
		{Subscription{Filter: "$share/g/a", Options: SubOptions{NoLocal: true}}, ErrNoLocalShared},
		{Subscription{Filter: "a", Options: SubOptions{QoS: 3}}, ErrBadOptions},
		{Subscription{Filter: "a", Options: SubOptions{RetainHandling: 3}}, ErrBadOptions},
	}
	for _, c := range cases {
		if _, err := r.Subscribe(c.s); !errors.Is(err, c.want) {
			t.Errorf("Subscribe(%+v) = %v, want %v", c.s, err, c.want)
		}
	}
	if r.Count() != 0 {
		t.Fatalf("failed subscribes were counted: %d", r.Count())
	}
	if r.Unsubscribe(1, "$share/g/") {
		t.Fatal("Unsubscribe of an empty shared filter reported true")
	}
}

func TestRouterSharedRoundRobin(t *testing.T) {
	r := NewRouter(Limits{})
	for c := uint64(1); c <= 3; c++ {
		mustSubscribe(t, r, Subscription{Client: c, Filter: "$share/g/a/+", Options: SubOptions{QoS: 1}, ID: uint32(c * 100)})
	}
	mustSubscribe(t, r, Subscription{Client: 1, Filter: "a/b", ID: 1})
	var picked []uint64
	for range 6 {
		for _, d := range match(r, "a/b", 0, nil) {
			if d.Shared {
				if !slices.Equal(d.IDs, []uint32{uint32(d.Client * 100)}) || d.QoS != 1 {
					t.Fatalf("shared delivery %+v", d)
				}
				picked = append(picked, d.Client)
			} else if d.Client != 1 || !slices.Equal(d.IDs, []uint32{1}) {
				t.Fatalf("non-shared delivery %+v merged with a shared one", d)
			}
		}
	}
	if !slices.Equal(picked, []uint64{1, 2, 3, 1, 2, 3}) {
		t.Fatalf("round robin picked %v", picked)
	}
	// Client 2 offline: the others take turns.
	offline2 := func(c uint64) bool { return c != 2 }
	picked = picked[:0]
	for range 4 {
		for _, d := range match(r, "a/b", 0, offline2) {
			if d.Shared {
				picked = append(picked, d.Client)
			}
		}
	}
	if !slices.Equal(picked, []uint64{1, 3, 1, 3}) {
		t.Fatalf("round robin with client 2 offline picked %v", picked)
	}
	// Nobody online: still exactly one, in turn.
	none := func(uint64) bool { return false }
	picked = picked[:0]
	for range 3 {
		for _, d := range match(r, "a/b", 0, none) {
			if d.Shared {
				picked = append(picked, d.Client)
			}
		}
	}
	if len(picked) != 3 || picked[0] == picked[1] {
		t.Fatalf("with nobody online picked %v, want one per message in turn", picked)
	}
}

func TestRouterSharedGroupsAreSeparate(t *testing.T) {
	r := NewRouter(Limits{})
	mustSubscribe(t, r, Subscription{Client: 1, Filter: "$share/g1/a/b"})
	mustSubscribe(t, r, Subscription{Client: 1, Filter: "$share/g2/a/b"})
	mustSubscribe(t, r, Subscription{Client: 2, Filter: "$share/g1/a/#"})
	mustSubscribe(t, r, Subscription{Client: 3, Filter: "a/b"})
	if !mustSubscribe(t, r, Subscription{Client: 1, Filter: "$share/g1/a/b", Options: SubOptions{QoS: 2}}) {
		t.Fatal("re-subscribing a group member did not report a replace")
	}
	if r.Count() != 4 {
		t.Fatalf("Count = %d, want 4", r.Count())
	}
	got := match(r, "a/b", 0, nil)
	shared := 0
	for _, d := range got {
		if d.Shared {
			shared++
		}
	}
	if len(got) != 4 || shared != 3 {
		t.Fatalf("got %+v, want 3 shared (one per group and filter) and 1 plain", got)
	}
	if r.Unsubscribe(1, "$share/g3/a/b") || r.Unsubscribe(9, "$share/g1/a/b") {
		t.Fatal("Unsubscribe from an absent group or member reported true")
	}
	mustSubscribe(t, r, Subscription{Client: 4, Filter: "$share/g1/a/b"})
	for _, f := range []struct {
		c uint64
		f string
	}{{1, "$share/g1/a/b"}, {4, "$share/g1/a/b"}, {1, "$share/g2/a/b"}, {2, "$share/g1/a/#"}, {3, "a/b"}} {
		if !r.Unsubscribe(f.c, f.f) {
			t.Fatalf("Unsubscribe(%d, %q) = false", f.c, f.f)
		}
	}
	if r.Count() != 0 || len(match(r, "a/b", 0, nil)) != 0 {
		t.Fatal("subscriptions remain after unsubscribing all")
	}
	assertEmpty(t, r)
}

func TestRouterWideFanout(t *testing.T) {
	// Enough filters to grow the exact index ("dev/N/temp") and the node table
	// ("dev/N/+") through several resizes on the way up and down; removal in random
	// order exercises the deleted slots of the node table and of the exact index.
	for _, form := range []string{"dev/%d/temp", "dev/%d/+"} {
		for _, n := range []int{200, 3000} {
			r := NewRouter(Limits{})
			for i := range n {
				mustSubscribe(t, r, Subscription{Client: uint64(i), Filter: fmt.Sprintf(form, i)})
			}
			for i := range n {
				got := match(r, fmt.Sprintf("dev/%d/temp", i), uint64(n+1), nil)
				if len(got) != 1 || got[0].Client != uint64(i) {
					t.Fatalf("%s: dev/%d/temp matched %+v", form, i, got)
				}
			}
			if got := match(r, "dev/none/temp", 0, nil); len(got) != 0 {
				t.Fatalf("%s: absent device matched %+v", form, got)
			}
			order := rand.New(rand.NewPCG(uint64(n), 0)).Perm(n)
			for k, i := range order {
				if !r.Unsubscribe(uint64(i), fmt.Sprintf(form, i)) {
					t.Fatalf("Unsubscribe %s failed", fmt.Sprintf(form, i))
				}
				if k%7 == 0 || n < 1000 {
					for _, j := range order[k+1:] {
						if got := match(r, fmt.Sprintf("dev/%d/temp", j), 0, nil); len(got) != 1 {
							t.Fatalf("%s: after removing %d devices dev/%d/temp matched %+v", form, k+1, j, got)
						}
						if n >= 1000 {
							break
						}
					}
				}
			}
			assertEmpty(t, r)
		}
	}
}

func TestRouterMatchBytesAndAppend(t *testing.T) {
	r := NewRouter(Limits{})
	mustSubscribe(t, r, Subscription{Client: 1, Filter: "a/+", ID: 3})
	mustSubscribe(t, r, Subscription{Client: 2, Filter: "b/#", ID: 4})
	var m Matches
	buf := []byte("a/x")
	r.MatchBytes(buf, 0, nil, &m)
	copy(buf, "b/y")
	r.MatchBytes(buf, 0, nil, &m) // appends
	r.MatchBytes(nil, 0, nil, &m)
	r.Match("", 0, nil, &m)
	if len(m.Deliveries) != 2 || m.Deliveries[0].Client != 1 || m.Deliveries[1].Client != 2 ||
		m.Deliveries[0].IDs[0] != 3 || m.Deliveries[1].IDs[0] != 4 {
		t.Fatalf("got %+v", m.Deliveries)
	}
	m.Reset()
	if len(m.Deliveries) != 0 {
		t.Fatal("Reset kept deliveries")
	}
}

// linearSub and linearMatch are the reference: every subscription tested one by one
// with MatchFilter, merged by the rules Match documents.
type linearSub struct {
	Subscription
	group, inner string
	shared       bool
}

func linearMatch(subs []linearSub, topic string, publisher uint64) (plain map[uint64]Delivery, groups map[string][]uint64) {
	plain = map[uint64]Delivery{}
	groups = map[string][]uint64{}
	for _, s := range subs {
		if s.shared {
			if MatchFilter(s.inner, topic) {
				key := s.group + "\x00" + s.inner
				groups[key] = append(groups[key], s.Client)
			}
			continue
		}
		if !MatchFilter(s.Filter, topic) || (s.Options.NoLocal && s.Client == publisher) {
			continue
		}
		d := plain[s.Client]
		d.Client = s.Client
		d.QoS = max(d.QoS, s.Options.QoS)
		d.RetainAsPublished = d.RetainAsPublished || s.Options.RetainAsPublished
		if s.ID != 0 {
			d.IDs = append(d.IDs, s.ID)
		}
		plain[s.Client] = d
	}
	return plain, groups
}

// randomFilter draws from a tiny vocabulary so random filters and topics collide.
func randomFilter(rng *rand.Rand) string {
	words := []string{"a", "b", "$s", ""}
	depth := 1 + rng.IntN(4)
	var parts []string
	for i := range depth {
		switch x := rng.IntN(10); {
		case x < 2:
			parts = append(parts, "+")
		case x < 3 && i == depth-1:
			parts = append(parts, "#")
		default:
			parts = append(parts, words[rng.IntN(len(words))])
		}
	}
	if f := strings.Join(parts, "/"); f != "" {
		return f
	}
	return "a"
}

func randomTopic(rng *rand.Rand) string {
	words := []string{"a", "b", "$s", ""}
	depth := 1 + rng.IntN(4)
	parts := make([]string, depth)
	for i := range parts {
		parts[i] = words[rng.IntN(len(words))]
	}
	if topic := strings.Join(parts, "/"); topic != "" {
		return topic
	}
	return "b"
}

// TestRouterAgainstLinear compares the trie with the linear reference on random
// filters and topics, through subscribes, replaces and unsubscribes.
func TestRouterAgainstLinear(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		r := NewRouter(Limits{})
		var subs []linearSub
		for step := range 400 {
			if len(subs) > 0 && rng.IntN(4) == 0 {
				i := rng.IntN(len(subs))
				if !r.Unsubscribe(subs[i].Client, subs[i].Filter) {
					t.Fatalf("seed %d: Unsubscribe(%d, %q) = false", seed, subs[i].Client, subs[i].Filter)
				}
				subs = slices.Delete(subs, i, i+1)
			} else {
				s := linearSub{Subscription: Subscription{
					Client:  uint64(1 + rng.IntN(8)),
					Filter:  randomFilter(rng),
					Options: SubOptions{QoS: byte(rng.IntN(3)), RetainAsPublished: rng.IntN(2) == 0},
					ID:      uint32(rng.IntN(3)),
				}}
				if rng.IntN(5) == 0 {
					s.group, s.inner, s.shared = fmt.Sprint("g", rng.IntN(2)), s.Filter, true
					s.Filter = "$share/" + s.group + "/" + s.inner
				} else {
					s.Options.NoLocal = rng.IntN(3) == 0
				}
				replaced := mustSubscribe(t, r, s.Subscription)
				i := slices.IndexFunc(subs, func(o linearSub) bool { return o.Client == s.Client && o.Filter == s.Filter })
				if replaced != (i >= 0) {
					t.Fatalf("seed %d: Subscribe(%+v) replaced = %v", seed, s.Subscription, replaced)
				}
				if i >= 0 {
					subs[i] = s
				} else {
					subs = append(subs, s)
				}
			}
			if r.Count() != len(subs) {
				t.Fatalf("seed %d step %d: Count = %d, want %d", seed, step, r.Count(), len(subs))
			}
			for range 3 {
				topic := randomTopic(rng)
				publisher := uint64(rng.IntN(9))
				compareWithLinear(t, r, subs, topic, publisher)
			}
		}
		for _, s := range subs {
			r.Unsubscribe(s.Client, s.Filter)
		}
		assertEmpty(t, r)
	}
}

func compareWithLinear(t *testing.T, r *Router, subs []linearSub, topic string, publisher uint64) {
	t.Helper()
	plain, groups := linearMatch(subs, topic, publisher)
	gotPlain := 0
	gotShared := 0
	for _, d := range match(r, topic, publisher, nil) {
		if d.Shared {
			gotShared++
			continue
		}
		gotPlain++
		want, ok := plain[d.Client]
		if !ok {
			t.Fatalf("topic %q: unexpected delivery %+v", topic, d)
		}
		if d.QoS != want.QoS || d.RetainAsPublished != want.RetainAsPublished ||
			!slices.Equal(slices.Sorted(slices.Values(d.IDs)), slices.Sorted(slices.Values(want.IDs))) {
			t.Fatalf("topic %q: delivery %+v, want %+v", topic, d, want)
		}
	}
	if gotPlain != len(plain) || gotShared != len(groups) {
		t.Fatalf("topic %q: %d plain and %d shared deliveries, want %d and %d (subs %+v)",
			topic, gotPlain, gotShared, len(plain), len(groups), subs)
	}
}

// TestRouterConcurrentStress matches while other goroutines subscribe and
// unsubscribe. Run under -race. Stable subscriptions must be found by every match,
// whatever the writers are doing to their neighbours.
func TestRouterConcurrentStress(t *testing.T) {
	r := NewRouter(Limits{})
	const stableClient = 1_000_000
	stable := []string{"s/a/b", "s/+/b", "+/a/#", "s/#"}
	for i, f := range stable {
		mustSubscribe(t, r, Subscription{Client: stableClient, Filter: f, ID: uint32(i + 1)})
	}
	mustSubscribe(t, r, Subscription{Client: stableClient + 1, Filter: "$share/g/s/a/b"})
	var stop atomic.Bool
	var writers, readers sync.WaitGroup
	for w := range 2 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for i := range 20000 {
				client := uint64(w*100 + rng.IntN(20))
				f := randomFilter(rng)
				if i%3 == 0 {
					f = fmt.Sprintf("s/a/%d", rng.IntN(50)) // wide fanout next to the stable path
				}
				if rng.IntN(2) == 0 {
					r.Subscribe(Subscription{Client: client, Filter: f})
				} else {
					r.Unsubscribe(client, f)
				}
				if rng.IntN(10) == 0 {
					r.Subscribe(Subscription{Client: client, Filter: "$share/g/s/a/b"})
					r.Unsubscribe(client, "$share/g/s/a/b")
				}
			}
		}()
	}
	errs := make(chan string, 2)
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			var m Matches
			for !stop.Load() {
				m.Reset()
				r.Match("s/a/b", 0, nil, &m)
				var ids []uint32
				shared := 0
				for _, d := range m.Deliveries {
					if d.Client == stableClient && !d.Shared {
						ids = d.IDs
					}
					if d.Shared {
						shared++
					}
				}
				if slices.Sort(ids); !slices.Equal(ids, []uint32{1, 2, 3, 4}) || shared != 1 {
					errs <- fmt.Sprintf("stable client got IDs %v and %d shared deliveries", ids, shared)
					return
				}
			}
		}()
	}
	writers.Wait()
	stop.Store(true)
	readers.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// TestLeafSetOneIsOneCacheLine guards the padding of leafSetOne (see there).
func TestLeafSetOneIsOneCacheLine(t *testing.T) {
	if size := unsafe.Sizeof(leafSetOne{}); size != 64 {
		t.Fatalf("leafSetOne is %d bytes, want 64", size)
	}
}

// TestExactEntryIsOneCacheLine guards the layout of exactEntry (see there).
func TestExactEntryIsOneCacheLine(t *testing.T) {
	if size := unsafe.Sizeof(exactEntry{}); size != 64 {
		t.Fatalf("exactEntry is %d bytes, want 64", size)
	}
}

// TestNodeIsOneCacheLine guards the layout the match path is tuned for (see node).
func TestNodeIsOneCacheLine(t *testing.T) {
	if size := unsafe.Sizeof(node{}); size != 64 {
		t.Fatalf("node is %d bytes, want 64", size)
	}
}
