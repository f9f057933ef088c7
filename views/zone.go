package views

import (
	"context"
	"time"
)

// zoneKey carries the school's time zone in a render's context: every time a page shows
// is in it (with its abbreviation), and the UTC time is the <time> element's title.
type zoneKey struct{}

// WithZone is ctx for rendering times in loc.
func WithZone(ctx context.Context, loc *time.Location) context.Context {
	return context.WithValue(ctx, zoneKey{}, loc)
}

// zoneOf is the time zone pages render in: UTC unless WithZone set one.
func zoneOf(ctx context.Context) *time.Location {
	if loc, ok := ctx.Value(zoneKey{}).(*time.Location); ok && loc != nil {
		return loc
	}
	return time.UTC
}

// formatTime renders a timestamp for people, in the school's time zone; the zero time
// renders as a dash.
func formatTime(ctx context.Context, t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.In(zoneOf(ctx)).Format("2 Jan 2006, 15:04 MST")
}

// formatClock renders a time of day, for "next attempt at" and "paused until".
func formatClock(ctx context.Context, t time.Time) string {
	return t.In(zoneOf(ctx)).Format("15:04:05 MST")
}

// utcTitle is a time in UTC, for a <time> element's title: shown on hover when the school's
// zone is another.
func utcTitle(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04:05 UTC") }
