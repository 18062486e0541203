//go:build unix

package persist

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockDir takes an exclusive advisory lock on path, so that a second promptmqd on the same data
// directory is refused instead of corrupting the first one's state. The kernel drops the lock when
// the process dies, so a crash never leaves a stale lock behind (unlike a PID file).
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("persist: open lock file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("persist: %s is locked: another promptmqd is using this data directory; stop it or choose another storage.data-dir: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("persist: lock %s: %w", path, err)
	}
	return f, nil
}

// unlockDir releases the lock; closing the descriptor drops the flock.
func unlockDir(f *os.File) error { return f.Close() }
