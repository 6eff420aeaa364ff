// Package testkit holds what the programs' tests share: a buffer a running process or
// server goroutine writes while the test reads it, and the binaries a test runs as
// processes. Only tests import it.
package testkit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// SyncBuffer is a bytes.Buffer safe for a process or goroutine to write while the test
// reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// RunWithBinaries is a TestMain: it builds the main packages pkgs (paths relative to the
// test's package) into a temporary directory, stores its path in *dir, runs the tests,
// removes the directory and exits with the tests' code.
func RunWithBinaries(m *testing.M, dir *string, pkgs ...string) {
	d, err := os.MkdirTemp("", "revocast-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*dir = d
	if out, err := exec.Command("go", append([]string{"build", "-o", d + string(os.PathSeparator)}, pkgs...)...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build %v: %v\n%s", pkgs, err, out)
		os.RemoveAll(d)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}
