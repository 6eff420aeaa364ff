package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

// TestUsageNamesTheProgram: under go run, args[0] is a path in the build cache; the usage
// line names revocastd instead, and -h is not an error main reports.
func TestUsageNamesTheProgram(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"/tmp/go-build1234/b001/exe/revocastd", "-h"}, func(string) string { return "" }, &bytes.Buffer{}, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h = %v, want flag.ErrHelp (exit 0)", err)
	}
	if first, _, _ := strings.Cut(stderr.String(), "\n"); first != "Usage of revocastd:" {
		t.Fatalf("usage line = %q, want %q", first, "Usage of revocastd:")
	}
}
