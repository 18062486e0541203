package engine

import (
	"syscall"
	"unsafe"
)

// System calls that cannot block, made without the scheduler's system-call bookkeeping
// (syscall.Read, Write and EpollWait enter and leave it). Besides its own cost, entering it
// wakes the runtime's monitor thread when that sleeps, and a monitor woken that way polls
// every 20 µs for a while (cmd/promptmqd/sysmon.go). Each is used only on a non-blocking
// socket or with a zero timeout, so it returns at once.

// rawRead is read(2) on a non-blocking socket.
func rawRead(fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(ptr), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// rawWrite is write(2) on a non-blocking socket; p is not empty.
func rawWrite(fd int, p []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// pollReady takes what is on an epoll set's ready list without waiting (epoll_wait with a
// zero timeout).
func pollReady(epfd int, events []syscall.EpollEvent) (int, error) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
