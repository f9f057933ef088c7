package views_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

func TestClassroomIDsCarryClassNames(t *testing.T) {
	a := association(3, "Science iPads")
	a.ClassroomIDs = []string{"c-1", "room-9"}
	ctx := views.WithClassNames(context.Background(), map[string]store.Class{"c-1": {ID: "c-1", DisplayName: "7B Science", ClassCode: "SCI-7B"}})
	doc, _ := renderCtx(t, ctx, views.AssociationDetail(adminPage, a, nil, views.Warnings{}))
	if got := texts(doc.Find(`[data-testid="prop-classroomIds"] li`)); got != "c-1 · 7B Science | room-9" {
		t.Errorf("classroom ids = %q", got)
	}
	// Without names (class names off), ids alone.
	doc, _ = render(t, views.AssociationDetail(adminPage, a, nil, views.Warnings{}))
	if doc.Find(`[data-testid="class-name"]`).Length() != 0 {
		t.Error("a class name without any known")
	}
}

func TestWarningsSaySoftly(t *testing.T) {
	a := association(3, "Science iPads")
	w := views.Warnings{
		UnknownRooms: []string{"room-1", "room-2"},
		SharedCarts:  map[string][]store.AssociationRef{"cart-12": {{ID: 4, DisplayName: "Art <b>laptops</b>"}}},
		SameName:     []store.AssociationRef{{ID: 9, DisplayName: "Science iPads"}},
	}
	doc, html := render(t, views.AssociationDetail(adminPage, a, nil, w))
	if got := text(testid(doc, "warning-rooms")); got != "room-1, room-2 are not a class in Microsoft Graph (a typo, or a class that is not in the list cartclass can read)." {
		t.Errorf("rooms warning = %q", got)
	}
	if got := text(testid(doc, "warning-cart")); !strings.HasPrefix(got, "cart-12 also serves Art <b>laptops</b>") {
		t.Errorf("cart warning = %q", got)
	}
	if strings.Contains(html, "<b>laptops") {
		t.Error("an association name is rendered as HTML")
	}
	if got := attr(testid(doc, "warning-name").Find("a"), "href"); got != "/associations/9" {
		t.Errorf("same-name link = %q", got)
	}
	a.DeletedAt = when
	doc, _ = render(t, views.AssociationDetail(adminPage, a, nil, w))
	if testid(doc, "warnings").Length() != 0 {
		t.Error("warnings on a deleted association")
	}
}

func TestSuggestionOptions(t *testing.T) {
	doc, _ := render(t, views.ClassSuggestions("7b", []store.Class{{ID: "c-1", DisplayName: "7B Science", ClassCode: "SCI-7B"}, {ID: "c-2"}}, ""))
	opts := doc.Find(`[role="option"]`)
	if opts.Length() != 2 || attr(opts.First(), "data-value") != "c-1" || attr(opts.First(), "id") != "classroomIds-opt-0" {
		t.Fatalf("options: %d, first %q", opts.Length(), attr(opts.First(), "data-value"))
	}
	if got := text(opts.First().Find(".suggest-main")); got != "7B Science · SCI-7B" {
		t.Errorf("first option = %q", got)
	}
	if got := text(opts.Last().Find(".suggest-main")); got != "c-2" {
		t.Errorf("a class without a name is offered as %q", got)
	}
	doc, _ = render(t, views.CartSuggestions("cart", []store.CartUse{{CartID: "cart-12", Rooms: 1}}))
	if got := text(doc.Find(`[role="option"]`)); got != "cart-12 serves 1 room" {
		t.Errorf("cart option = %q", got)
	}
	doc, _ = render(t, views.CartSuggestions("zz", nil))
	if got := attr(doc.Find(`[role="option"]`), "aria-disabled"); got != "true" {
		t.Errorf("the no-match line is selectable: aria-disabled=%q", got)
	}
}

func TestLookupPages(t *testing.T) {
	l := views.Lookup{Query: "7b", Page: 2, PerPage: 50, Total: 120}
	doc, _ := render(t, views.ClassroomsPage(adminPage, l, []store.ClassroomEntry{
		{ClassroomID: "c-1", Class: &store.Class{ID: "c-1", DisplayName: "7B Science", ClassCode: "SCI-7B"}, Carts: []string{"cart-12"}, Associations: []store.AssociationRef{{ID: 3, DisplayName: "Science iPads"}}},
		{ClassroomID: "room-9", Carts: []string{"cart-1"}},
	}))
	rows := testid(doc, "classroom-row")
	if rows.Length() != 2 || text(rows.First().Find(`[data-testid="classroom-name"]`)) != "7B Science" || text(rows.Last().Find(`[data-testid="classroom-id"]`)) != "room-9" {
		t.Errorf("rows: %q", texts(rows))
	}
	if got := attr(doc.Find(`.pager a[rel="next"]`), "href"); got != "/classrooms?page=3&q=7b" {
		t.Errorf("next page = %q", got)
	}
	if got := text(testid(doc, "result-count")); got != "120 classrooms" {
		t.Errorf("count = %q", got)
	}
	doc, _ = render(t, views.CartsPage(adminPage, views.Lookup{Query: "zz", Page: 1, PerPage: 50}, nil))
	if got := text(testid(doc, "no-results")); got != "No cart matches “zz”." {
		t.Errorf("no results = %q", got)
	}
}

// The conflict page and the import preview name classes too.
func TestConflictAndImportPreviewNameClasses(t *testing.T) {
	ctx := views.WithClassNames(context.Background(), map[string]store.Class{"c-1": {ID: "c-1", DisplayName: "7B Science"}})
	cur := association(3, "Science iPads")
	cur.ClassroomIDs = []string{"c-1"}
	mine := cur.Fields
	mine.Description = "mine"
	doc, _ := renderCtx(t, ctx, views.ConflictView(views.Conflict{Mine: mine, Current: cur}))
	if n := doc.Find(`[data-testid="class-name"]`).Length(); n != 2 {
		t.Errorf("the conflict page names the class %d times, want 2 (both versions)", n)
	}
	p := store.ImportPreview{ID: "P", ExpiresAt: when.Add(time.Hour), Changed: 1, Rows: []store.ImportRow{{Row: 2, Kind: store.ImportChanged, Name: "x", AssociationID: 3,
		Changes: []store.FieldChange{{Field: "classroomIds", Added: []string{"c-1"}, Removed: []string{"room-9"}}}}}}
	doc, _ = renderCtx(t, ctx, views.ImportPreviewPage(adminPage, views.ImportPreview{Preview: p, ChangesPage: 1, ErrorsPage: 1}))
	if got := texts(doc.Find(`[data-testid="import-change-lines"] li`)); got != "Classroom IDs: added c-1 (7B Science); removed room-9" {
		t.Errorf("preview line = %q", got)
	}
}

func TestLookupPastTheLastPage(t *testing.T) {
	doc, _ := render(t, views.CartsPage(adminPage, views.Lookup{Query: "cart", Page: 9, PerPage: 50, Total: 5}, nil))
	if got := text(testid(doc, "no-results")); got != "No more results on this page. Back to the first page." {
		t.Errorf("past the last page: %q", got)
	}
	if got := attr(testid(doc, "no-results").Find("a"), "href"); got != "/carts?q=cart" {
		t.Errorf("first page link = %q", got)
	}
}
