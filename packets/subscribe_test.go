package packets

import (
	"slices"
	"testing"
)

// TestSubscribeSubscriptionIDFastPath: a 5.0 SUBSCRIBE whose property block
// is two bytes starting with the Subscription Identifier is read without
// the general property loop; for every value of the second byte, and with a
// Subscribe that held other properties before, the outcome must equal the
// general path's.
func TestSubscribeSubscriptionIDFastPath(t *testing.T) {
	for v := range 256 {
		body := []byte{0, 9, 2, byte(PropSubscriptionID), byte(v), 0, 3, 'a', '/', 'b', 1}
		var general Properties
		_, wantErr := readProperties(&general, body, 2, subscribeProps, "SUBSCRIBE")

		var sub Subscribe
		sub.Properties.Present = bit(PropUserProperty)
		sub.Properties.User = []UserProperty{{s("k"), s("v")}}
		sub.Properties.SubscriptionIDs = []uint32{7}
		err := sub.Decode(V5, subscribeFlags, body)
		switch {
		case wantErr != nil:
			if err == nil || codeOf(t, err) != codeOf(t, wantErr) {
				t.Fatalf("identifier byte 0x%02X: error %v, want %v", v, err, wantErr)
			}
		case err != nil:
			t.Fatalf("identifier byte 0x%02X: %v", v, err)
		case sub.Properties.Present != general.Present || !slices.Equal(sub.Properties.SubscriptionIDs, general.SubscriptionIDs) ||
			len(sub.Properties.User) != 0 || len(sub.Subscriptions) != 1 || string(sub.Subscriptions[0].Filter) != "a/b":
			t.Fatalf("identifier byte 0x%02X: %+v, want properties %+v", v, sub, general)
		}
	}
}
