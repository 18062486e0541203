//go:build !linux

package engine

import (
	"errors"
	"net"
	"time"
)

// idlePoller exists on Linux only (poll_linux.go); elsewhere every connection keeps its
// reader goroutine, and newIdlePoller says so.
type idlePoller struct{}

func newIdlePoller() (*idlePoller, error) {
	return nil, errors.New("idle connections park in epoll on Linux only")
}

func parkable(net.Conn) bool          { return false }
func (*idlePoller) arm(*client) error { return errors.New("no idle poller") }
func (*idlePoller) forget(*client)    {}
func (*idlePoller) run()              {}
func (*idlePoller) close()            {}

// orderSet and socketReader exist on Linux only: elsewhere connections read with conn.Read,
// unordered.
type orderSet struct{ arrivalOrder }

func newOrderSet() (*orderSet, error) {
	return nil, errors.New("arrival order is kept on Linux only")
}

func (*orderSet) forget(*client) {}
func (*orderSet) close()         {}

type socketReader struct{}

func (*socketReader) init(*client) bool        { return false }
func (*socketReader) read([]byte) (int, error) { return 0, errors.New("no socket reader") }
func (*socketReader) afterControl()            {}
func (*socketReader) connectWaited() bool      { return false }
func (*socketReader) write([]byte, time.Duration) (int, error) {
	return 0, errors.New("no socket reader")
}
func (*socketReader) placeAfterControl() {}
func (*socketReader) releasePlaces()     {}
