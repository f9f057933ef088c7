package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Fault changes how matching requests on the Graph paths are answered.
// Only the first matching fault with uses left applies to a request.
type Fault struct {
	// Method matches the HTTP method ("" = any).
	Method string `json:"method,omitempty"`
	// Path matches when the URL path contains it ("" = any).
	Path string `json:"path,omitempty"`
	// Count is how many matching requests the fault affects; 0 means every
	// matching request until ClearFaults.
	Count int `json:"count,omitempty"`
	// Status, when set, answers with this status and a Graph-shaped error
	// instead of serving the request (nothing is applied).
	Status int `json:"status,omitempty"`
	// Code and Message override the error's code and message.
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	// RetryAfter is sent verbatim as the Retry-After header with Status
	// ("" = no header), e.g. "2.128" or an HTTP date.
	RetryAfter string `json:"retryAfter,omitempty"`
	// Latency delays the answer (on top of SetLatency). In JSON, a Go
	// duration string such as "250ms".
	Latency time.Duration `json:"-"`
	// DropAfterApply serves the request (a create or update takes effect)
	// and then closes the connection without answering: the lost response.
	DropAfterApply bool `json:"dropAfterApply,omitempty"`
	// DropBeforeApply closes the connection without serving the request.
	DropBeforeApply bool `json:"dropBeforeApply,omitempty"`
}

// UnmarshalJSON reads a Fault, with latency as a duration string.
func (f *Fault) UnmarshalJSON(b []byte) error {
	type plain Fault
	var aux struct {
		plain
		Latency string `json:"latency"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*f = Fault(aux.plain)
	if aux.Latency != "" {
		d, err := time.ParseDuration(aux.Latency)
		if err != nil || d < 0 {
			return fmt.Errorf("bad latency %q", aux.Latency)
		}
		f.Latency = d
	}
	return nil
}

// MarshalJSON writes a Fault, with latency as a duration string.
func (f Fault) MarshalJSON() ([]byte, error) {
	type plain Fault
	aux := struct {
		plain
		Latency string `json:"latency,omitempty"`
	}{plain: plain(f)}
	if f.Latency > 0 {
		aux.Latency = f.Latency.String()
	}
	return json.Marshal(aux)
}

func (f *Fault) code() string {
	if f.Code != "" {
		return f.Code
	}
	return codeFor(f.Status)
}

func (f *Fault) message() string {
	if f.Message != "" {
		return f.Message
	}
	if t := http.StatusText(f.Status); t != "" {
		return t + "."
	}
	return "Injected fault."
}

type activeFault struct {
	Fault
	remaining int // -1: until cleared
}

// Inject adds a fault after those already injected.
func (e *Emulator) Inject(f Fault) {
	remaining := f.Count
	if remaining <= 0 {
		remaining = -1
	}
	e.mu.Lock()
	e.faults = append(e.faults, &activeFault{Fault: f, remaining: remaining})
	e.mu.Unlock()
}

// ClearFaults removes all injected faults (not the SetLatency delay).
func (e *Emulator) ClearFaults() {
	e.mu.Lock()
	e.faults = nil
	e.mu.Unlock()
}

// SetLatency delays every answer on the Graph paths by d.
func (e *Emulator) SetLatency(d time.Duration) {
	e.mu.Lock()
	e.latency = max(d, 0)
	e.mu.Unlock()
}

// takeFault consumes one use of the first fault matching r and returns it
// with the total delay to apply.
func (e *Emulator) takeFault(r *http.Request) (*Fault, time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	latency := e.latency
	for i, af := range e.faults {
		if af.Method != "" && !strings.EqualFold(af.Method, r.Method) {
			continue
		}
		if af.Path != "" && !strings.Contains(r.URL.Path, af.Path) {
			continue
		}
		f := af.Fault
		if af.remaining > 0 {
			af.remaining--
			if af.remaining == 0 {
				e.faults = append(e.faults[:i:i], e.faults[i+1:]...)
			}
		}
		return &f, latency + f.Latency
	}
	return nil, latency
}

// takeWrite counts a write against the write limit, or, when the limit is
// reached, returns how long until a slot frees.
func (e *Emulator) takeWrite() (time.Duration, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.writeLimit <= 0 || e.writeWindow <= 0 {
		return 0, true
	}
	now := e.now()
	keep := e.writes[:0]
	for _, t := range e.writes {
		if now.Sub(t) < e.writeWindow {
			keep = append(keep, t)
		}
	}
	e.writes = keep
	if len(e.writes) >= e.writeLimit {
		return max(e.writes[0].Add(e.writeWindow).Sub(now), time.Second), false
	}
	e.writes = append(e.writes, now)
	return 0, true
}
