//go:build !linux

package engine

import (
	"errors"
	"net"
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
