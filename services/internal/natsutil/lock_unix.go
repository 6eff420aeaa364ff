//go:build unix

package natsutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFile is the name of the lock revocastd holds on its data directory.
const lockFile = "revocastd.lock"

// lockDataDir takes an exclusive lock on dir for as long as this process runs, or until
// release is called: two embedded servers on one JetStream store would corrupt it. The
// lock is the kernel's (flock), so it goes away with a crashed process and no stale lock
// file ever blocks a restart. The file holds the pid of its holder, for the error.
func lockDataDir(dir string) (release func(), err error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock the data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if b, _ := os.ReadFile(path); len(b) > 0 {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					holder = fmt.Sprintf("another process (pid %d)", pid)
				}
			}
			abs, _ := filepath.Abs(dir)
			return nil, fmt.Errorf("data directory %s is in use by %s, most likely another revocastd: stop it, or give this one a data directory of its own (REVOCAST_DATA_DIR)", abs, holder)
		}
		return nil, fmt.Errorf("lock the data directory: %w", err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}
