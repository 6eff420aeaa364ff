package flagenv

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestDefaultsAndSet(t *testing.T) {
	vars := map[string]string{"ADDR": "127.0.0.1:9", "WAIT": "3s", "BAD": "soon"}
	getenv := func(k string) string { return vars[k] }
	env := Defaults(getenv)
	if got := env("ADDR", "x"); got != "127.0.0.1:9" {
		t.Fatalf("set variable: %q", got)
	}
	if got := env("UNSET", "x"); got != "x" {
		t.Fatalf("unset variable: %q", got)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	wait := fs.Duration("wait", time.Second, "")
	other := fs.Duration("other", time.Second, "")
	if err := Set(fs, getenv, map[string]string{"wait": "WAIT", "other": "UNSET"}); err != nil || *wait != 3*time.Second || *other != time.Second {
		t.Fatalf("Set = %v: wait %s, other %s", err, *wait, *other)
	}
	if err := Set(fs, getenv, map[string]string{"wait": "BAD"}); err == nil || !strings.HasPrefix(err.Error(), `BAD="soon": `) {
		t.Fatalf("bad value: %v", err)
	}
}
