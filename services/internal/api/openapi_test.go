package api_test

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/goccy/go-yaml"

	"github.com/revocast/revocast/services/internal/api"
)

// openAPI is the part of docs/openapi.yaml the tests check: paths, methods, status codes.
type openAPI struct {
	Paths map[string]map[string]struct {
		Responses map[string]any `yaml:"responses"`
	} `yaml:"paths"`
}

func loadOpenAPI(tb testing.TB) openAPI {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "openapi.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	var doc openAPI
	if err := yaml.Unmarshal(b, &doc); err != nil {
		tb.Fatalf("docs/openapi.yaml: %v", err)
	}
	return doc
}

// observed records every (method, documented path, status) the API tests saw, so TestMain
// can check that the document describes what the server really answers.
var observed sync.Map

func observe(method, path string, status int) {
	observed.Store(fmt.Sprintf("%s %s %d", method, path, status), true)
}

var paramRE = regexp.MustCompile(`\{[^}]+\}`)

// documentedPath maps a request path to the template of the document that matches it.
func documentedPath(doc openAPI, path string) string {
	for tmpl := range doc.Paths {
		re := "^" + paramRE.ReplaceAllString(regexp.QuoteMeta(tmpl), `[^/]+`) + "$"
		re = strings.ReplaceAll(re, `\{`, "{")
		if regexp.MustCompile(re).MatchString(path) {
			return tmpl
		}
	}
	return ""
}

// checkObserved fails when a test saw a status the document does not list.
func checkObserved(doc openAPI) []string {
	var problems []string
	observed.Range(func(k, _ any) bool {
		var method, path string
		var status int
		fmt.Sscanf(k.(string), "%s %s %d", &method, &path, &status)
		op, ok := doc.Paths[path][strings.ToLower(method)]
		if !ok {
			return true // a wrong method or path; 404/405 are checked by TestOpenAPIRoutes
		}
		if _, ok := op.Responses[fmt.Sprint(status)]; !ok {
			problems = append(problems, fmt.Sprintf("%s %s answered %d, which docs/openapi.yaml does not list", method, path, status))
		}
		return true
	})
	sort.Strings(problems)
	return problems
}

// TestOpenAPIRoutes checks that every route of the server is documented and every
// documented operation is served.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	f := newFixture(t, api.Config{})
	engine := f.handler.(*gin.Engine)
	var served []string
	for _, r := range engine.Routes() {
		served = append(served, r.Method+" "+regexp.MustCompile(`:(\w+)`).ReplaceAllString(r.Path, "{$1}"))
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	sort.Strings(served)
	sort.Strings(documented)
	if !slices.Equal(served, documented) {
		t.Fatalf("served routes:\n%s\ndocumented:\n%s", strings.Join(served, "\n"), strings.Join(documented, "\n"))
	}
	_ = httptest.NewRecorder
}
