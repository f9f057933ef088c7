package push

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/store"
)

// This file is the retry policy, in one place: what the worker does with each outcome of
// an attempt to push one association.

// verdict is what to do with an item after a failed attempt.
type verdict int

const (
	// retry: this item only, after capped exponential backoff with full jitter
	// (5xx, 408, timeouts, resets, unknown outcomes, 429 without Retry-After).
	retry verdict = iota
	// throttle: Graph sent 429 with Retry-After: no request for any record until it has
	// passed; the item is due again right after.
	throttle
	// permission: 403: pause the whole queue, naming the missing scope, until Resume, a
	// new sign-in, or the periodic re-check.
	permission
	// signIn: the author's token is expired or revoked even after one refresh, or there is
	// none: this author's changes wait for a new sign-in; others keep flowing.
	signIn
	// fail: Graph rejected the record (400, 422, other 4xx): park it with Graph's error
	// until the admin edits it or presses Retry.
	fail
	// deleted: a GET or PATCH answered 404: the object was removed in Intune; park it and
	// offer re-create.
	deleted
	// postpone: nothing was sent (the queue was paused or the worker is stopping, or the
	// association was saved again meanwhile): release the item without counting an attempt.
	postpone
	// awaitRead: an earlier POST's answer was lost, and only a read of Intune begun after
	// it can tell whether it created the object: the item waits for that read.
	awaitRead
)

func (v verdict) String() string {
	return [...]string{"retry", "throttle", "permission", "signin", "fail", "deleted", "postpone", "await-read"}[v]
}

// outcome is the verdict's name in cartclass_pushes_total.
func (v verdict) outcome() string {
	return [...]string{"retry", "throttled", "permission", "signin", "failed", "deleted", "postponed", "awaiting_read"}[v]
}

// errPaused is returned by the gate when the queue is paused: no request was sent.
var errPaused = errors.New("push: queue paused")

// errSavedMeanwhile: the association was saved again during the attempt, before anything
// was sent; it is claimed afresh with its newer state.
var errSavedMeanwhile = errors.New("push: saved again meanwhile")

// errAwaitRead: the item waits for a read of Intune (see awaitRead).
var errAwaitRead = errors.New("push: waiting for a read of Intune")

// classify maps the error of an attempt to a verdict; for throttle it also returns how
// long to pause. update tells whether the attempt was about an existing object (GET before
// PATCH, PATCH: a 404 then means deleted).
func classify(err error, update bool) (verdict, time.Duration) {
	if errors.Is(err, errPaused) || errors.Is(err, errSavedMeanwhile) {
		return postpone, 0
	}
	if errors.Is(err, errAwaitRead) {
		return awaitRead, 0
	}
	if errors.Is(err, ErrSignInNeeded) || errors.Is(err, graph.ErrNoTokenSource) {
		return signIn, 0
	}
	var ae *graph.APIError
	if !errors.As(err, &ae) {
		return retry, 0 // transport errors, timeouts, store errors
	}
	switch s := ae.Status; {
	case s == http.StatusTooManyRequests && ae.HasRetryAfter:
		// Honoured to the millisecond, but a (broken or hostile) answer asking for days
		// must not silence the queue until someone restarts cartclass.
		return throttle, min(ae.RetryAfter, maxThrottle)
	case s == http.StatusTooManyRequests, s == http.StatusRequestTimeout, s >= 500:
		return retry, 0
	case s == http.StatusUnauthorized:
		return signIn, 0
	case s == http.StatusForbidden:
		return permission, 0
	case s == http.StatusNotFound && update:
		return deleted, 0
	case s == http.StatusNotFound:
		// A 404 on the collection (POST or list) is the deployment's fault, not the record's.
		return retry, 0
	}
	return fail, 0
}

// maxThrottle bounds one Retry-After pause; Graph's own ask for minutes at most.
const maxThrottle = time.Hour

// backoff is the delay before attempt number attempts+1 of one item: full jitter over an
// exponential ceiling, base·2^attempts capped at max.
func backoff(attempts int, base, max time.Duration) time.Duration {
	ceil := base
	for i := 0; i < attempts && ceil < max; i++ {
		ceil *= 2
	}
	ceil = min(ceil, max)
	if ceil <= 0 {
		return 0
	}
	return rand.N(ceil + 1)
}

// syncErrorOf is the short form of err that admins see beside the record.
func syncErrorOf(err error) *store.SyncError {
	var ae *graph.APIError
	if errors.As(err, &ae) {
		return &store.SyncError{Status: ae.Status, Code: ae.Code, Message: ae.Short(), RequestID: ae.RequestID}
	}
	var te *graph.TransportError
	if errors.As(err, &te) {
		return &store.SyncError{Code: "TransportError", Message: "Could not reach Microsoft Graph; retrying."}
	}
	return &store.SyncError{Code: "Error", Message: "Could not push to Microsoft Graph; retrying."}
}

// scopePattern matches Graph permission names such as DeviceManagementConfiguration.ReadWrite.All.
var scopePattern = regexp.MustCompile(`\b[A-Z][A-Za-z]+\.(?:Read|ReadWrite|ReadBasic)(?:\.[A-Za-z]+)*\b`)

// missingScope names the permission a 403 asks for: the scopes Graph's message names (it
// usually lists the accepted ones), else the configured ones.
func missingScope(err error, configured []string) string {
	var names []string
	var ae *graph.APIError
	if errors.As(err, &ae) {
		for _, m := range scopePattern.FindAllString(ae.Message, -1) {
			if !slices.Contains(names, m) {
				names = append(names, m)
			}
		}
	}
	if len(names) == 0 {
		names = configured
	}
	return strings.Join(names, " or ")
}
