package topics

import (
	"errors"
	"testing"
)

// FuzzRouterMatchesFilter checks, for any filter and topic, that validation never
// panics, that a filter the router accepts matches exactly the topics MatchFilter
// says, and that unsubscribing leaves the trie empty.
func FuzzRouterMatchesFilter(f *testing.F) {
	for _, c := range matchCases {
		f.Add(c.filter, c.topic)
	}
	f.Add("$share/g/a/+", "a/b")
	f.Fuzz(func(t *testing.T, filter, topic string) {
		r := NewRouter(Limits{})
		_, err := r.Subscribe(Subscription{Client: 1, Filter: filter})
		if err != nil {
			if ValidateFilter(filter, Limits{}) == nil && !errors.Is(err, ErrBadOptions) {
				t.Fatalf("valid filter %q refused: %v", filter, err)
			}
			return
		}
		inner := filter
		if _, in, ok := ParseShare(filter); ok {
			inner = in
		}
		if ValidateName(topic, Limits{}) == nil {
			got := len(match(r, topic, 0, nil)) == 1
			if want := MatchFilter(inner, topic); got != want {
				t.Fatalf("filter %q topic %q: router %v, MatchFilter %v", filter, topic, got, want)
			}
		}
		if !r.Unsubscribe(1, filter) || r.Count() != 0 {
			t.Fatalf("Unsubscribe(%q) failed", filter)
		}
		assertEmpty(t, r)
	})
}
