package graph

import (
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"2.128", 2128 * time.Millisecond, true},
		{"0.1", 100 * time.Millisecond, true},
		{"120", 120 * time.Second, true},
		{" 3 ", 3 * time.Second, true},
		{"0", 0, true},
		{"1.0000000019", time.Second + 1*time.Nanosecond, true}, // digits past ns ignored
		{"99999999999999999999", time.Duration(math.MaxInt64), true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1.", 0, false},
		{"1.2.3", 0, false},
		{"2,5", 0, false},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestAPIErrorStringIsShortAndSafe(t *testing.T) {
	e := &APIError{
		Status:    400,
		Code:      "BadRequest",
		Message:   "first line\r\nsecond\u202eline " + strings.Repeat("x", 1000),
		RequestID: "rid-1",
	}
	s := e.Error()
	if !strings.HasPrefix(s, "graph: 400 BadRequest: first line second line x") {
		t.Errorf("Error() = %q", s)
	}
	if !strings.HasSuffix(s, "… (request-id rid-1)") {
		t.Errorf("Error() not truncated with request-id: %q", s)
	}
	if n := len([]rune(s)); n > 260 {
		t.Errorf("Error() is %d runes long", n)
	}
	if strings.ContainsAny(s, "\r\n\u202e") {
		t.Errorf("Error() contains control characters: %q", s)
	}
	short := e.Short()
	if !strings.HasPrefix(short, "Microsoft Graph rejected the data: first line") || len([]rune(short)) > 200 {
		t.Errorf("Short() = %q", short)
	}
	if got := (&APIError{Status: 429, RetryAfter: 2128 * time.Millisecond, HasRetryAfter: true}).Short(); !strings.Contains(got, "2.128s") {
		t.Errorf("Short() for 429 = %q", got)
	}
}

// Intune wraps its sentence in a JSON document and appends diagnostics; admins see only
// the sentence.
func TestShortUnwrapsIntuneMessages(t *testing.T) {
	intune := "{\r\n  \"_version\": 3,\r\n  \"Message\": \"The cart list is invalid. - Operation ID (for customer support): 0000 - Activity ID: rid - Url: https://fef.example/x\",\r\n  \"CustomApiErrorPhrase\": \"\"\r\n}"
	for _, tc := range []struct {
		e    *APIError
		want string
	}{
		{&APIError{Status: 400, Message: intune}, "Microsoft Graph rejected the data: The cart list is invalid."},
		{&APIError{Status: 403, Message: "Application is not authorized. Application must have one of the following scopes: A.ReadWrite.All, B.ReadWrite.All - Operation ID (for customer support): 0 - Activity ID: x"},
			"Missing permission in Microsoft Graph: Application is not authorized. Application must have one of the following scopes: A.ReadWrite.All, B.ReadWrite.All"},
	} {
		if got := tc.e.Short(); got != tc.want {
			t.Errorf("Short() = %q, want %q", got, tc.want)
		}
	}
}

func TestOrigin(t *testing.T) {
	same := [][2]string{
		{"https://graph.microsoft.com/beta", "https://graph.microsoft.com:443/beta/x?$skiptoken=1"},
		{"https://Graph.Microsoft.com/beta", "HTTPS://graph.microsoft.com/v1.0"},
		{"http://127.0.0.1:8080/beta", "http://127.0.0.1:8080/y"},
	}
	for _, p := range same {
		a, _ := url.Parse(p[0])
		b, _ := url.Parse(p[1])
		if origin(a) != origin(b) {
			t.Errorf("origin(%s) != origin(%s)", p[0], p[1])
		}
	}
	differ := [][2]string{
		{"https://graph.microsoft.com/beta", "http://graph.microsoft.com/beta"},
		{"https://graph.microsoft.com/beta", "https://graph.microsoft.com.evil.example/beta"},
		{"http://127.0.0.1:8080/beta", "http://127.0.0.1:8081/beta"},
	}
	for _, p := range differ {
		a, _ := url.Parse(p[0])
		b, _ := url.Parse(p[1])
		if origin(a) == origin(b) {
			t.Errorf("origin(%s) == origin(%s)", p[0], p[1])
		}
	}
}
