package engine

import (
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/x0a1b/promptmq/packets"
)

// BenchmarkConnectCycle is the connection-rate benchmark in process: connect, CONNACK,
// DISCONNECT, close. Its allocations are the broker's per connection plus the client side's
// (a net.Dial), which stays the same from one broker version to the next.
func BenchmarkConnectCycle(b *testing.B) {
	_, addr := testBroker(b, nil)
	disconnect := (&packets.Disconnect{Version: packets.V5}).Append(nil)
	buf := make([]byte, 64)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		connect := (&packets.Connect{Version: packets.V5, CleanStart: true, KeepAlive: 60, ClientID: []byte(fmt.Sprint("cycle-", i%64))}).Append(nil)
		if _, err := conn.Write(connect); err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Read(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Write(disconnect); err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, conn); err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
}
