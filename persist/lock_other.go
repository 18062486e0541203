//go:build !unix

package persist

import (
	"errors"
	"fmt"
	"os"
)

// lockDir creates path exclusively where flock is not available. Unlike flock, a crash leaves the
// file behind, so the message says how to recover.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("persist: %s exists: another promptmqd may be using this data directory; if none runs, delete the file: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("persist: create lock file %s: %w", path, err)
	}
	return f, nil
}

// unlockDir releases the lock by removing the file lockDir created.
func unlockDir(f *os.File) error {
	err := f.Close()
	if rerr := os.Remove(f.Name()); err == nil {
		err = rerr
	}
	return err
}
