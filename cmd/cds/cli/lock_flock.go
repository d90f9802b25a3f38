//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package cli

import (
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive advisory lock on path (created 0600 if missing) and
// returns the function that releases it. The lock is the kernel's: it is released
// when the process ends, so a crashed cds leaves no stale lock behind.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("flock %s: %w", path, err)
	}
	return func() {
		// Closing the file releases the lock.
		f.Close()
	}, nil
}
