package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cartclass/cartclass/graph"
)

// maxControlBody caps control request bodies.
const maxControlBody = 1 << 20

// serveControl serves the /_emulator/ endpoints (see ServeHTTP).
func (e *Emulator) serveControl(w http.ResponseWriter, r *http.Request) {
	if p := strings.TrimSuffix(r.URL.Path, "/"); p != r.URL.Path {
		r = r.Clone(r.Context())
		r.URL.Path, r.URL.RawPath = p, ""
	}
	e.controlMux.ServeHTTP(w, r)
}

func (e *Emulator) newControlMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /_emulator/faults", e.handleFaultsInject)
	mux.HandleFunc("DELETE /_emulator/faults", func(w http.ResponseWriter, r *http.Request) {
		e.ClearFaults()
		reply(w, http.StatusNoContent, nil)
	})
	mux.HandleFunc("POST /_emulator/latency", e.handleLatency)
	mux.HandleFunc("POST /_emulator/pagesize", e.handlePageSize)
	mux.HandleFunc("POST /_emulator/writelimit", e.handleWriteLimit)
	mux.HandleFunc("GET /_emulator/requests", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, e.Requests())
	})
	mux.HandleFunc("GET /_emulator/objects", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, e.Objects())
	})
	mux.HandleFunc("POST /_emulator/objects", e.handleObjectPut)
	mux.HandleFunc("PATCH /_emulator/objects/{id}", e.handleObjectChange)
	mux.HandleFunc("DELETE /_emulator/objects/{id}", e.handleObjectRemove)
	mux.HandleFunc("GET /_emulator/classes", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, e.Classes())
	})
	mux.HandleFunc("POST /_emulator/classes", e.handleClassesSet)
	mux.HandleFunc("POST /_emulator/classes/forbidden", e.handleClassesForbidden)
	mux.HandleFunc("POST /_emulator/reset", func(w http.ResponseWriter, r *http.Request) {
		e.Reset()
		reply(w, http.StatusNoContent, nil)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusNotFound, map[string]string{"error": "unknown control endpoint"})
	})
	return mux
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

func bad(w http.ResponseWriter, err error) {
	reply(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
}

// decodeControl decodes a control request's JSON body into v.
func decodeControl(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody)).Decode(v); err != nil {
		bad(w, err)
		return false
	}
	return true
}

// readProps reads a body shaped like a Graph POST or PATCH, validated as
// strictly as the API does.
func readProps(w http.ResponseWriter, r *http.Request) (props, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxControlBody))
	if err != nil {
		bad(w, err)
		return props{}, false
	}
	p, err := parseProps(body)
	if err != nil {
		bad(w, err)
		return props{}, false
	}
	return p, true
}

func (e *Emulator) handleFaultsInject(w http.ResponseWriter, r *http.Request) {
	var raw json.RawMessage
	if !decodeControl(w, r, &raw) {
		return
	}
	var faults []Fault
	if len(raw) > 0 && raw[0] == '[' {
		if err := json.Unmarshal(raw, &faults); err != nil {
			bad(w, err)
			return
		}
	} else {
		var f Fault
		if err := json.Unmarshal(raw, &f); err != nil {
			bad(w, err)
			return
		}
		faults = []Fault{f}
	}
	for _, f := range faults {
		e.Inject(f)
	}
	reply(w, http.StatusNoContent, nil)
}

func (e *Emulator) handleLatency(w http.ResponseWriter, r *http.Request) {
	var v struct {
		Latency string `json:"latency"`
	}
	if !decodeControl(w, r, &v) {
		return
	}
	d, err := time.ParseDuration(v.Latency)
	if err != nil || d < 0 {
		bad(w, fmt.Errorf("bad latency %q", v.Latency))
		return
	}
	e.SetLatency(d)
	reply(w, http.StatusNoContent, nil)
}

func (e *Emulator) handlePageSize(w http.ResponseWriter, r *http.Request) {
	var v struct {
		PageSize int `json:"pageSize"`
	}
	if !decodeControl(w, r, &v) {
		return
	}
	if v.PageSize < 1 {
		bad(w, fmt.Errorf("pageSize must be at least 1, got %d", v.PageSize))
		return
	}
	e.SetPageSize(v.PageSize)
	reply(w, http.StatusNoContent, nil)
}

// handleWriteLimit sets the write limit; the window defaults to Intune's
// 20 s, and writes 0 turns the limit off.
func (e *Emulator) handleWriteLimit(w http.ResponseWriter, r *http.Request) {
	var v struct {
		Writes int    `json:"writes"`
		Window string `json:"window"`
	}
	if !decodeControl(w, r, &v) {
		return
	}
	window := 20 * time.Second
	if v.Window != "" {
		d, err := time.ParseDuration(v.Window)
		if err != nil || d <= 0 {
			bad(w, fmt.Errorf("bad window %q", v.Window))
			return
		}
		window = d
	}
	if v.Writes < 0 {
		bad(w, fmt.Errorf("writes must not be negative, got %d", v.Writes))
		return
	}
	e.SetWriteLimit(v.Writes, window)
	reply(w, http.StatusNoContent, nil)
}

func (e *Emulator) handleObjectPut(w http.ResponseWriter, r *http.Request) {
	p, ok := readProps(w, r)
	if !ok {
		return
	}
	a := e.PutObject(p.apply(graph.Association{}))
	reply(w, http.StatusCreated, toWire(a, ""))
}

func (e *Emulator) handleObjectChange(w http.ResponseWriter, r *http.Request) {
	p, ok := readProps(w, r)
	if !ok {
		return
	}
	a, err := e.ChangeObject(r.PathValue("id"), patchOf(p))
	if errors.Is(err, ErrNotFound) {
		reply(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		return
	}
	reply(w, http.StatusOK, toWire(a, ""))
}

func (e *Emulator) handleObjectRemove(w http.ResponseWriter, r *http.Request) {
	if err := e.RemoveObject(r.PathValue("id")); errors.Is(err, ErrNotFound) {
		reply(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		return
	}
	reply(w, http.StatusNoContent, nil)
}
