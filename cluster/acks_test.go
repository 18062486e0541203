package cluster

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestInterestViewExpected(t *testing.T) {
	v := newInterestView()
	v.set("b", 1, "a/+", true)
	v.set("b", 1, "a/#", true) // overlapping: node b once
	v.set("c", 1, "x/#", true)
	v.set("c", 1, "$share/g/a/#", true)
	v.set("self", 1, "$share/g/a/#", true) // the same group held here too: one ack key
	got := v.expected("a/1", "self")
	slices.Sort(got)
	if want := []string{"$share/g/a/#", "b"}; !slices.Equal(got, want) {
		t.Fatalf("expected(a/1) = %v, want %v", got, want)
	}
	if v.any("z/1", "self") {
		t.Fatal("z/1 has no interest")
	}
	v.set("b", 0, "z/1", true) // an older run of b: ignored
	if v.any("z/1", "self") {
		t.Fatal("an older incarnation's announcement was applied")
	}
	v.set("b", 2, "z/1", true) // b restarted: its old filters go
	if got := v.expected("a/1", "self"); !slices.Equal(got, []string{"$share/g/a/#"}) {
		t.Fatalf("after b's restart expected(a/1) = %v", got)
	}
	v.drop("c", 1)
	v.set("self", 1, "$share/g/a/#", false)
	if v.any("a/1", "self") || !v.any("z/1", "self") {
		t.Fatal("drop or removal not applied")
	}
}

// Waiters run in the order their batches were sent, whatever the order of the answers.
func TestAckWaitsKeepOrder(t *testing.T) {
	a := newAckWaits()
	stop := make(chan struct{})
	go a.loop(stop)
	defer func() { close(stop); <-a.done }()
	results := make(chan string, 4)
	waiter := func(name string) func(error) {
		a.outstanding.Add(1)
		return func(err error) {
			if err != nil {
				name += ":" + err.Error()
			}
			results <- name
		}
	}
	far := time.Now().Add(time.Hour)
	a.add(1, []string{"b", "c"}, []func(error){waiter("first")}, far)
	a.add(2, nil, []func(error){waiter("second")}, far) // nothing to wait for, still behind the first
	a.add(3, []string{"b"}, []func(error){waiter("third")}, far)
	a.acked(3, "b", true)
	a.acked(1, "b", true)
	select {
	case r := <-results:
		t.Fatalf("%s ran before the first batch was acknowledged by all", r)
	case <-time.After(50 * time.Millisecond): // a guard: nothing may arrive
	}
	a.acked(1, "c", true)
	for _, want := range []string{"first", "second", "third"} {
		if got := <-results; got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	a.add(4, []string{"dead"}, []func(error){waiter("fourth")}, far)
	a.fail("dead", time.Time{})
	if got := <-results; got != "fourth:"+errNodeDied.Error() {
		t.Fatalf("got %s", got)
	}
	a.add(5, []string{"slow"}, []func(error){waiter("fifth")}, time.Now())
	a.fail("", time.Now().Add(time.Millisecond))
	if got := <-results; got != "fifth:"+errAckTimeout.Error() {
		t.Fatalf("got %s", got)
	}
	if n := a.outstanding.Load(); n != 0 {
		t.Fatalf("outstanding %d after every waiter ran", n)
	}
}

// stallLocal never finishes committing: its node never acknowledges.
type stallLocal struct{ *fakeLocal }

func (stallLocal) Committed(func(error)) {}

// A QoS 1/2 forward waits for the node with interest: acknowledged when it committed, refused
// when it does not answer within the failure timeout.
func TestForwardWaitsForAcknowledgement(t *testing.T) {
	for _, tc := range []struct {
		name  string
		local func() Local
		want  error
	}{
		{"committed", func() Local { return newFakeLocal() }, nil},
		{"no answer", func() Local { return stallLocal{newFakeLocal()} }, errAckTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n1 := startFastNode(t, "n1", newFakeLocal())
			n2 := startFastNode(t, "n2", tc.local(), n1.srv.ClusterAddr().String())
			pollUntil(t, "two nodes", func() bool { return n1.LiveNodes() == 2 && n2.LiveNodes() == 2 })
			if n1.Forward("q/1", 1, []byte{0x32, 0}, func(error) {}) {
				t.Fatal("a forward with no node interested waited")
			}
			n2.Subscribe("q/#")
			pollUntil(t, "n2's announcement", func() bool { return n1.view.any("q/1", n1.id) })
			done := make(chan error, 1)
			if !n1.Forward("q/1", 1, []byte{0x32, 0}, func(err error) { done <- err }) {
				t.Fatal("a forward to an interested node did not wait")
			}
			select {
			case err := <-done:
				if !errors.Is(err, tc.want) && err != tc.want {
					t.Fatalf("acked with %v, want %v", err, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("never acknowledged nor refused")
			}
		})
	}
}
