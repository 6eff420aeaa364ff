package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// TestBenchmarkCommandsMatchTheDocs: docs/benchmarks.md and the Taskfile's bench task give
// the same commands, flag for flag, so `task bench` reproduces the documented figures.
func TestBenchmarkCommandsMatchTheDocs(t *testing.T) {
	raw, err := os.ReadFile("../../Taskfile.yml")
	if err != nil {
		t.Fatal(err)
	}
	var tf struct {
		Tasks map[string]struct {
			Cmds []string `yaml:"cmds"`
		} `yaml:"tasks"`
	}
	if err := yaml.Unmarshal(raw, &tf); err != nil {
		t.Fatalf("Taskfile.yml: %v", err)
	}
	var task []string
	for _, cmd := range tf.Tasks["bench"].Cmds {
		if strings.HasPrefix(cmd, "go test ") && strings.Contains(cmd, " -bench ") {
			task = append(task, cmd)
		}
	}
	if len(task) == 0 {
		t.Fatal("the bench task runs no benchmark")
	}
	doc, err := os.ReadFile("../../docs/benchmarks.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	inBlock := false
	for _, line := range strings.Split(string(doc), "\n") {
		switch {
		case strings.HasPrefix(line, "```"):
			inBlock = !inBlock
		case inBlock && strings.HasPrefix(line, "go test ") && strings.Contains(line, " -bench "):
			documented = append(documented, line)
		}
	}
	for _, cmd := range task {
		if !slices.Contains(documented, cmd) {
			t.Errorf("Taskfile.yml runs %q, which docs/benchmarks.md does not give", cmd)
		}
	}
	for _, cmd := range documented {
		if !slices.Contains(task, cmd) {
			t.Errorf("docs/benchmarks.md gives %q, which task bench does not run", cmd)
		}
	}
}
