package graph

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// APIError is a non-2xx answer from Graph. Branch on Status and Code, never
// on Message: Intune puts long diagnostics there. Message is kept whole for
// logs; Error and Short give safe, short forms.
type APIError struct {
	Status          int    // HTTP status code
	Code            string // Graph error code, e.g. "BadRequest", "ResourceNotFound"
	Message         string // Graph's message, whole (may be long)
	RequestID       string // Graph's request-id (body innerError, else response header)
	ClientRequestID string // the client-request-id of the request
	Date            string // innerError date, else the Date header

	// RetryAfter is the wait the Retry-After header asked for, when
	// HasRetryAfter is true. Zero with HasRetryAfter means "retry now".
	RetryAfter    time.Duration
	HasRetryAfter bool
}

// maxErrorMessage bounds the message text in Error.
const maxErrorMessage = 200

// Error gives status, code, a short message and the request-id.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "graph: %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if m := shorten(e.Message, maxErrorMessage); m != "" {
		b.WriteString(": " + m)
	}
	if e.RequestID != "" {
		b.WriteString(" (request-id " + e.RequestID + ")")
	}
	return b.String()
}

// Short is a plain-words summary for admins, without diagnostics.
func (e *APIError) Short() string {
	switch {
	case e.Status == http.StatusBadRequest || e.Status == http.StatusUnprocessableEntity:
		if m := shorten(plainMessage(e.Message), 120); m != "" {
			return "Microsoft Graph rejected the data: " + m
		}
		return "Microsoft Graph rejected the data."
	case e.Status == http.StatusUnauthorized:
		return "The Microsoft sign-in has expired or was revoked; sign in again."
	case e.Status == http.StatusForbidden:
		if m := shorten(plainMessage(e.Message), 200); m != "" {
			return "Missing permission in Microsoft Graph: " + m
		}
		return "Missing permission in Microsoft Graph."
	case e.Status == http.StatusNotFound:
		return "The association no longer exists in Intune."
	case e.Status == http.StatusTooManyRequests:
		if e.HasRetryAfter {
			return fmt.Sprintf("Microsoft Graph is throttling requests; retrying after %s.", e.RetryAfter.Round(time.Millisecond))
		}
		return "Microsoft Graph is throttling requests; retrying later."
	case e.Status >= 500:
		return "Microsoft Graph is temporarily unavailable; retrying later."
	}
	return fmt.Sprintf("Microsoft Graph answered %d %s.", e.Status, http.StatusText(e.Status))
}

// plainMessage is the sentence in a Graph error message meant for people. Intune wraps it
// in a JSON document ({"_version":3,"Message":"…",…}) and appends " - Operation ID …
// - Activity ID … - Url …" diagnostics; both are dropped (the whole text goes to logs).
func plainMessage(m string) string {
	var intune struct{ Message string }
	if strings.HasPrefix(strings.TrimSpace(m), "{") && json.Unmarshal([]byte(m), &intune) == nil && intune.Message != "" {
		m = intune.Message
	}
	if i := strings.Index(m, " - Operation ID"); i >= 0 {
		m = m[:i]
	}
	return strings.TrimSpace(m)
}

// IsNotFound reports whether err is a 404 from Graph (the object does not
// exist: deleted remotely, or a retried delete already done).
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// TransportError is an exchange with Graph that produced no usable answer:
// the connection failed, the context ended, or a success response could not
// be read or decoded. Written tells whether the whole request had been sent
// (so Graph may have acted on it).
type TransportError struct {
	Method string
	Path   string // URL path, no query
	Status int    // the success status received, if any (body unusable); 0 otherwise
	// Written is true when the request was completely written to the
	// connection before the failure (or a response was received at all).
	Written bool
	Err     error
}

func (e *TransportError) Error() string {
	s := fmt.Sprintf("graph: %s %s: %v", e.Method, e.Path, e.Err)
	if e.Status != 0 {
		s += fmt.Sprintf(" (after status %d)", e.Status)
	}
	if e.Written {
		s += " (request may have reached Graph)"
	} else {
		s += " (request not sent)"
	}
	return s
}

func (e *TransportError) Unwrap() error { return e.Err }

// OutcomeUnknown reports whether the request behind err may have been
// carried out by Graph even though no success was seen. It is true for a
// *TransportError whose request was fully written (e.g. the connection
// dropped while waiting for the answer, or the answer was unreadable), and
// for a 5xx *APIError other than 501, since Graph's gateway can time out or
// fail after Intune applied the change. It is false for errors that prove
// nothing was done: dial failures, token failures, 4xx answers, 429.
//
// Before re-sending a create for which OutcomeUnknown is true, list the
// remote objects and adopt a match.
func OutcomeUnknown(err error) bool {
	var te *TransportError
	if errors.As(err, &te) {
		return te.Written
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status >= 500 && ae.Status != http.StatusNotImplemented
	}
	return false
}

// errorBody is Graph's error shape. innerError may nest.
type errorBody struct {
	Error struct {
		Code       string          `json:"code"`
		Message    string          `json:"message"`
		InnerError json.RawMessage `json:"innerError"`
	} `json:"error"`
}

type innerError struct {
	RequestID       string          `json:"request-id"`
	Date            string          `json:"date"`
	ClientRequestID string          `json:"client-request-id"`
	InnerError      json.RawMessage `json:"innerError"`
}

// newAPIError builds an APIError from a non-2xx response. body may be
// truncated or not JSON at all (a proxy's HTML page, say).
func newAPIError(resp *http.Response, body []byte, sentClientRequestID string) *APIError {
	e := &APIError{Status: resp.StatusCode}
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err == nil && (eb.Error.Code != "" || eb.Error.Message != "") {
		e.Code = eb.Error.Code
		e.Message = eb.Error.Message
		raw := eb.Error.InnerError
		// Walk nested innerErrors, keeping the first value found for each
		// field; a bound on depth guards against pathological bodies.
		for depth := 0; depth < 8 && len(raw) > 0; depth++ {
			var ie innerError
			if json.Unmarshal(raw, &ie) != nil {
				break
			}
			e.RequestID = first(e.RequestID, ie.RequestID)
			e.Date = first(e.Date, ie.Date)
			e.ClientRequestID = first(e.ClientRequestID, ie.ClientRequestID)
			raw = ie.InnerError
		}
	} else {
		e.Message = strings.TrimSpace(string(body))
	}
	e.RequestID = first(e.RequestID, resp.Header.Get("request-id"))
	e.ClientRequestID = first(e.ClientRequestID, resp.Header.Get("client-request-id"), sentClientRequestID)
	e.Date = first(e.Date, resp.Header.Get("Date"))
	if v := resp.Header.Get("Retry-After"); v != "" {
		now := time.Now()
		if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
			now = d // measure an HTTP-date Retry-After against Graph's clock
		}
		e.RetryAfter, e.HasRetryAfter = parseRetryAfter(v, now)
	}
	return e
}

// parseRetryAfter reads a Retry-After value: delay-seconds, possibly
// fractional ("2.128", parsed exactly, without float rounding), or an
// HTTP-date measured from now. A date in the past means zero.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		return parseSeconds(v)
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d := t.Sub(now); d > 0 {
		return d, true
	}
	return 0, true
}

// parseSeconds parses "123" or "2.128" into a Duration exactly, ignoring
// digits beyond nanoseconds and saturating at the largest Duration.
func parseSeconds(v string) (time.Duration, bool) {
	intPart, frac, hasDot := strings.Cut(v, ".")
	if intPart == "" || (hasDot && frac == "") || !allDigits(intPart) || !allDigits(frac) {
		return 0, false
	}
	var secs int64
	for _, c := range intPart {
		if secs > (math.MaxInt64/int64(time.Second))/10 {
			return time.Duration(math.MaxInt64), true
		}
		secs = secs*10 + int64(c-'0')
	}
	if secs > math.MaxInt64/int64(time.Second) {
		return time.Duration(math.MaxInt64), true
	}
	var nanos int64
	scale := int64(time.Second)
	for _, c := range frac {
		scale /= 10
		if scale == 0 {
			break
		}
		nanos += int64(c-'0') * scale
	}
	d := secs*int64(time.Second) + nanos
	if d < 0 { // overflow in the addition
		return time.Duration(math.MaxInt64), true
	}
	return time.Duration(d), true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// shorten collapses runs of whitespace, control and format characters
// (including bidi overrides) to single spaces and truncates to at most n
// runes, marking the cut with "…".
func shorten(s string, n int) string {
	fields := strings.FieldsFunc(s, func(r rune) bool {
		return r == utf8.RuneError || unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
	})
	joined := strings.Join(fields, " ")
	if utf8.RuneCountInString(joined) <= n {
		return joined
	}
	return strings.TrimSpace(string([]rune(joined)[:n])) + "…"
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
