package api

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"
)

// plainJSON renders a body as compact JSON without HTML escaping: messages quote
// placeholders such as <app credential> and read as written, not as \u003c. gin's c.JSON
// escapes HTML, and c.PureJSON adds a newline the API never sent.
type plainJSON struct{ data any }

func (r plainJSON) Render(w http.ResponseWriter) error {
	r.WriteContentType(w)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r.data); err != nil {
		return err
	}
	_, err := w.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	return err
}

func (plainJSON) WriteContentType(w http.ResponseWriter) {
	if h := w.Header(); len(h["Content-Type"]) == 0 {
		h["Content-Type"] = []string{"application/json; charset=utf-8"}
	}
}

// writeJSON answers status with body as plain JSON; every API body goes through it.
func writeJSON(c *gin.Context, status int, body any) { c.Render(status, plainJSON{body}) }
