package push

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cartclass/cartclass/graph"
	"golang.org/x/oauth2"
)

func TestClassify(t *testing.T) {
	api := func(status int, retryAfter string) error {
		e := &graph.APIError{Status: status}
		if retryAfter != "" {
			e.RetryAfter, e.HasRetryAfter = 2128*time.Millisecond, true
		}
		return fmt.Errorf("create: %w", e)
	}
	for _, tc := range []struct {
		name   string
		err    error
		update bool
		want   verdict
		wait   time.Duration
	}{
		{"429 with Retry-After", api(429, "2.128"), false, throttle, 2128 * time.Millisecond},
		{"429 without", api(429, ""), false, retry, 0},
		{"429 asking for days", fmt.Errorf("update: %w", &graph.APIError{Status: 429, RetryAfter: 72 * time.Hour, HasRetryAfter: true}), true, throttle, time.Hour},
		{"500", api(500, ""), true, retry, 0},
		{"503", api(503, ""), false, retry, 0},
		{"504", api(504, ""), false, retry, 0},
		{"408", api(408, ""), false, retry, 0},
		{"400", api(400, ""), false, fail, 0},
		{"422", api(422, ""), true, fail, 0},
		{"409", api(409, ""), true, fail, 0},
		{"401", api(401, ""), true, signIn, 0},
		{"403", api(403, ""), false, permission, 0},
		{"404 on PATCH", api(404, ""), true, deleted, 0},
		{"404 on POST", api(404, ""), false, retry, 0},
		{"transport", &graph.TransportError{Method: "POST", Written: true, Err: context.DeadlineExceeded}, false, retry, 0},
		{"sign-in needed", fmt.Errorf("token: %w", ErrSignInNeeded), false, signIn, 0},
		// Which provider refusals mean "sign in again" is the TokenSourcer's call (it wraps
		// ErrSignInNeeded); a bare token error is retried.
		{"bare token error", fmt.Errorf("graph: get token: %w", &oauth2.RetrieveError{ErrorCode: "invalid_grant"}), false, retry, 0},
		{"other token error", fmt.Errorf("graph: get token: %w", &oauth2.RetrieveError{ErrorCode: "temporarily_unavailable"}), false, retry, 0},
		{"paused", errPaused, false, postpone, 0},
		{"store", errors.New("database is locked"), false, retry, 0},
	} {
		v, wait := classify(tc.err, tc.update)
		if v != tc.want || wait != tc.wait {
			t.Errorf("%s: classify = %v, %v; want %v, %v", tc.name, v, wait, tc.want, tc.wait)
		}
	}
}

func TestBackoffIsCappedFullJitter(t *testing.T) {
	base, limit := 10*time.Millisecond, 80*time.Millisecond
	for attempts, ceil := range []time.Duration{10, 20, 40, 80, 80, 80} {
		ceil *= time.Millisecond
		var most time.Duration
		for range 200 {
			d := backoff(attempts, base, limit)
			if d < 0 || d > ceil {
				t.Fatalf("backoff(%d) = %v, want within [0, %v]", attempts, d, ceil)
			}
			most = max(most, d)
		}
		// Full jitter spreads over the whole range: 200 draws all in the lower half would
		// happen once in 2^200 (or mean the ceiling is not growing).
		if most <= ceil/2 {
			t.Errorf("backoff(%d) never passed %v in 200 draws (max %v)", attempts, ceil/2, most)
		}
	}
	if d := backoff(1000, time.Second, 5*time.Minute); d > 5*time.Minute {
		t.Fatalf("backoff(1000) = %v past the cap", d)
	}
}

func TestMissingScope(t *testing.T) {
	configured := []string{"A.ReadWrite.All"}
	named := &graph.APIError{Status: 403, Message: "Application must have one of the following scopes: " +
		"DeviceManagementConfiguration.ReadWrite.All, DeviceManagementServiceConfig.ReadWrite.All - Operation ID: x"}
	if got, want := missingScope(named, configured), "DeviceManagementConfiguration.ReadWrite.All or DeviceManagementServiceConfig.ReadWrite.All"; got != want {
		t.Errorf("missingScope(named) = %q, want %q", got, want)
	}
	if got := missingScope(&graph.APIError{Status: 403, Message: "Forbidden."}, configured); got != "A.ReadWrite.All" {
		t.Errorf("missingScope(unnamed) = %q, want the configured scope", got)
	}
}

// The pacing limiter never lets more than n + n/10 events through in any period.
func TestLimiterPaces(t *testing.T) {
	t0 := time.Unix(0, 0)
	lim := newLimiter(10, time.Second) // burst 1, one event per 100 ms
	take := func(at time.Time) time.Duration {
		r := lim.ReserveN(at, 1)
		if d := r.DelayFrom(at); d > 0 {
			r.CancelAt(at)
			return d
		}
		return 0
	}
	if d := take(t0); d != 0 {
		t.Fatalf("first event waits %v", d)
	}
	if d := take(t0); d != 100*time.Millisecond {
		t.Fatalf("second event waits %v, want 100ms", d)
	}
	if d := take(t0.Add(100 * time.Millisecond)); d != 0 {
		t.Fatalf("event after 100ms waits %v", d)
	}
	taken := 0
	for ms := range 1000 {
		if take(t0.Add(time.Duration(100+ms)*time.Millisecond)) == 0 {
			taken++
		}
	}
	if taken > 11 {
		t.Fatalf("%d events in one second, want at most 11", taken)
	}
	if newLimiter(0, time.Second) != nil {
		t.Error("n = 0 must lift pacing")
	}
}
