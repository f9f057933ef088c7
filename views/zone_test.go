package views_test

import (
	"context"
	"testing"
	"time"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

// Times show in the school's zone, with its abbreviation, and in UTC on hover.
func TestTimesShowInTheSchoolsZone(t *testing.T) {
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	a := association(7, "Old carts")
	a.UpdatedAt = when // 30 Jun 2025, 14:05:09 UTC: British Summer Time
	l := views.AssociationList{Page: 1, PerPage: 50, Total: 1, Items: []store.Association{a}}
	for _, c := range []struct {
		ctx        context.Context
		want, hint string
	}{
		{context.Background(), "30 Jun 2025, 14:05 UTC", "30 Jun 2025, 14:05:09 UTC"},
		{views.WithZone(context.Background(), london), "30 Jun 2025, 15:05 BST", "30 Jun 2025, 14:05:09 UTC"},
		{views.WithZone(context.Background(), time.FixedZone("", 3*3600)), "30 Jun 2025, 17:05 +0300", "30 Jun 2025, 14:05:09 UTC"},
	} {
		doc, _ := renderCtx(t, c.ctx, views.AssociationTable(l))
		tm := doc.Find(`[data-testid="association-row"] time`).First()
		if got := text(tm); got != c.want {
			t.Errorf("time shows %q, want %q", got, c.want)
		}
		if got := attr(tm, "title"); got != c.hint {
			t.Errorf("time's title %q, want %q", got, c.hint)
		}
		if got := attr(tm, "datetime"); got != "2025-06-30T14:05:09Z" {
			t.Errorf("datetime = %q", got)
		}
	}
}
