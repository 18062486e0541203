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
