package topics

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

func visitTopics(r *Retained[string], filter string) []string {
	var got []string
	r.Visit(filter, func(topic, msg string) bool {
		if msg != "m:"+topic {
			panic("message does not belong to its topic: " + topic)
		}
		got = append(got, topic)
		return true
	})
	slices.Sort(got)
	return got
}

func TestRetainedSetReplaceDelete(t *testing.T) {
	r := NewRetained[string]()
	r.Set("a/b", "m:a/b", 10)
	r.Set("a/c", "m:a/c", 5)
	r.Set("a/b", "m:a/b", 7) // replace
	if r.Len() != 2 || r.Bytes() != 12 {
		t.Fatalf("Len %d Bytes %d, want 2 and 12", r.Len(), r.Bytes())
	}
	if msg, ok := r.Get("a/b"); !ok || msg != "m:a/b" {
		t.Fatalf("Get(a/b) = %q, %v", msg, ok)
	}
	for _, absent := range []string{"a", "a/b/c", "x"} {
		if _, ok := r.Get(absent); ok {
			t.Fatalf("Get(%q) found a message", absent)
		}
	}
	if r.Delete("a") || r.Delete("a/x") || r.Delete("q/r") {
		t.Fatal("Delete of an absent topic reported true")
	}
	if !r.Delete("a/b") || r.Delete("a/b") {
		t.Fatal("Delete should succeed once")
	}
	if r.Len() != 1 || r.Bytes() != 5 {
		t.Fatalf("Len %d Bytes %d after delete, want 1 and 5", r.Len(), r.Bytes())
	}
	r.Set("a", "m:a", 1)
	r.Delete("a/c")
	if got := visitTopics(r, "#"); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after deleting a/c, # visits %v", got)
	}
	r.Delete("a")
	if r.Len() != 0 || r.Bytes() != 0 || len(r.root.children) != 0 {
		t.Fatalf("index not empty: Len %d Bytes %d children %d", r.Len(), r.Bytes(), len(r.root.children))
	}
}

func TestRetainedVisit(t *testing.T) {
	r := NewRetained[string]()
	topics := []string{
		"sport", "sport/", "sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking",
		"sport/tennis/player1/score/wimbledon", "sport/tennis/player2", "/finance", "finance",
		"$SYS/monitor/Clients", "$SYS", "a/$b",
	}
	for _, topic := range topics {
		r.Set(topic, "m:"+topic, len(topic))
	}
	for _, filter := range []string{
		"#", "+", "+/+", "/+", "sport/#", "sport/+", "sport/tennis/player1/#", "sport/tennis/+",
		"+/tennis/#", "$SYS/#", "$SYS/monitor/+", "+/monitor/Clients", "a/+", "a/#", "nothing/#",
		"sport/tennis/player1/score/wimbledon", "sport/tennis/nobody",
	} {
		var want []string
		for _, topic := range topics {
			if MatchFilter(filter, topic) {
				want = append(want, topic)
			}
		}
		slices.Sort(want)
		if got := visitTopics(r, filter); !slices.Equal(got, want) {
			t.Errorf("Visit(%q) = %v, want %v", filter, got, want)
		}
	}
	// fn returning false stops the walk, through every kind of level.
	for _, filter := range []string{"#", "sport/#", "+/+", "sport/tennis"} {
		n := 0
		r.Visit(filter, func(string, string) bool { n++; return false })
		if n != 1 {
			t.Errorf("Visit(%q) called fn %d times after it returned false", filter, n)
		}
	}
}

// TestRetainedAgainstLinear compares Visit with MatchFilter over random topics.
func TestRetainedAgainstLinear(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	r := NewRetained[string]()
	held := map[string]bool{}
	for range 2000 {
		topic := randomTopic(rng)
		if rng.IntN(3) == 0 {
			if r.Delete(topic) != held[topic] {
				t.Fatalf("Delete(%q) disagrees with the reference", topic)
			}
			delete(held, topic)
		} else {
			r.Set(topic, "m:"+topic, 1)
			held[topic] = true
		}
		filter := randomFilter(rng)
		var want []string
		for topic := range held {
			if MatchFilter(filter, topic) {
				want = append(want, topic)
			}
		}
		slices.Sort(want)
		if got := visitTopics(r, filter); !slices.Equal(got, want) {
			t.Fatalf("Visit(%q) = %v, want %v", filter, got, want)
		}
		if r.Len() != len(held) || r.Bytes() != int64(len(held)) {
			t.Fatalf("Len %d Bytes %d, want %d", r.Len(), r.Bytes(), len(held))
		}
	}
}

func TestRetainedConcurrent(t *testing.T) {
	r := NewRetained[string]()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				topic := fmt.Sprintf("w%d/%d", w, i%50)
				switch i % 3 {
				case 0:
					r.Set(topic, "m:"+topic, 1)
				case 1:
					visitTopics(r, "+/#")
				default:
					r.Delete(topic)
				}
				r.Get(topic)
			}
		}()
	}
	wg.Wait()
	if n := len(visitTopics(r, "#")); n != r.Len() {
		t.Fatalf("Visit found %d messages, Len says %d", n, r.Len())
	}
}

// SetAll in any order, topic order included (where byte order and level order differ, as for
// "a-b" and "a/b"), builds the same index as Set.
func TestRetainedSetAllMatchesSet(t *testing.T) {
	topics := []string{"a", "a/b", "a-b/c", "a/b/c", "a!/x", "a.b", "b/+x", "$SYS/x", "a/b/d", "a/c", "/", "//a", "a/"}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		order := slices.Clone(topics)
		if round == 0 {
			slices.Sort(order)
		} else {
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		bulk, one := NewRetained[string](), NewRetained[string]()
		bulk.SetAll(len(order), func(i int) (string, string, int) { return order[i], "m:" + order[i], len(order[i]) })
		for _, topic := range order {
			one.Set(topic, "m:"+topic, len(topic))
		}
		if bulk.Len() != one.Len() || bulk.Bytes() != one.Bytes() {
			t.Fatalf("order %v: SetAll Len %d Bytes %d, Set Len %d Bytes %d", order, bulk.Len(), bulk.Bytes(), one.Len(), one.Bytes())
		}
		for _, filter := range []string{"#", "a/#", "+/+", "a/+/c", "+", "$SYS/#", "/#", "a-b/c"} {
			if got, want := visitTopics(bulk, filter), visitTopics(one, filter); !slices.Equal(got, want) {
				t.Fatalf("order %v, filter %q: SetAll visits %v, Set %v", order, filter, got, want)
			}
		}
		for _, topic := range order {
			if !bulk.Delete(topic) {
				t.Fatalf("Delete(%q) after SetAll found nothing", topic)
			}
		}
		if bulk.Len() != 0 || len(bulk.root.children) != 0 {
			t.Fatalf("not empty after deleting all: Len %d", bulk.Len())
		}
	}
}

// BenchmarkRetainedLoad loads 100,000 topics in topic order, shaped as the recovery test's
// (retained/<publisher>/<n>: wide last levels), as recovery does: SetAll (appends, nodes
// from slabs) against Set one by one.
func BenchmarkRetainedLoad(b *testing.B) {
	const n = 100_000
	topics := make([]string, n)
	for i := range topics {
		topics[i] = fmt.Sprintf("retained/%d/%d", i%4, i/4)
	}
	slices.Sort(topics)
	b.Run("SetAll", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r := NewRetained[int]()
			r.SetAll(n, func(i int) (string, int, int) { return topics[i], i, 64 })
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/msg")
	})
	b.Run("Set", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r := NewRetained[int]()
			for i, topic := range topics {
				r.Set(topic, i, 64)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/msg")
	})
}
