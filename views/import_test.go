package views_test

import (
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

var adminPage = views.Page{Title: "Import", User: &views.User{Name: "Ada Admin", Role: "Admin", CanEdit: true}}

// preview is a preview of one changed, one new and (with invalid) one bad row.
func preview(invalid bool) store.ImportPreview {
	p := store.ImportPreview{ID: "ABC", FileName: `term2 <b>"x"</b>.csv`, CreatedAt: when, ExpiresAt: when.Add(time.Hour),
		New: 1, Changed: 1, Unchanged: 40}
	p.Rows = []store.ImportRow{
		{Row: 2, Kind: store.ImportChanged, Name: "Science iPads", AssociationID: 7, Changes: []store.FieldChange{
			{Field: "description", Old: "Shared by Science", New: "Science block only"},
			{Field: "deviceCartIds", Added: []string{"cart-12"}, Removed: []string{"cart-3"}},
		}},
		{Row: 3, Kind: store.ImportNew, Name: "<script>alert(1)</script>", Changes: []store.FieldChange{
			{Field: "displayName", New: "<script>alert(1)</script>"}, {Field: "version", New: "1"},
			{Field: "classroomIds", Added: []string{"room-1", "room-2"}},
		}},
	}
	if invalid {
		p.Invalid = 1
		p.Rows = append(p.Rows, store.ImportRow{Row: 5, Kind: store.ImportInvalid, Name: "", Errors: []store.ImportError{
			{Column: "displayName", Message: "Enter a display name."},
			{Column: "version", Message: "Enter a whole number from 0 to 2,147,483,647."},
		}})
	}
	return p
}

// texts is the text of each of sel's elements, joined by " | ".
func texts(sel *goquery.Selection) string {
	return strings.Join(sel.Map(func(_ int, s *goquery.Selection) string { return text(s) }), " | ")
}

func TestImportPreviewShowsEveryChangeAndApply(t *testing.T) {
	doc, html := render(t, views.ImportPreviewPage(adminPage, views.ImportPreview{Preview: preview(false), ChangesPage: 1, ErrorsPage: 1}))
	if got := text(testid(doc, "import-summary")); got != "1 new, 1 changed, 40 unchanged" {
		t.Errorf("summary = %q", got)
	}
	if got := text(testid(doc, "import-title")); got != `Import “term2 <b>"x"</b>.csv”` {
		t.Errorf("title = %q", got)
	}
	if strings.Contains(html, "<script>alert") || strings.Contains(html, "<b>") {
		t.Error("a file name or value from the upload is rendered as HTML")
	}
	rows := testid(doc, "import-change")
	if rows.Length() != 2 {
		t.Fatalf("%d change rows, want 2", rows.Length())
	}
	if got := texts(rows.First().Find(`[data-testid="import-change-lines"] li`)); got != "Description: “Shared by Science” → “Science block only” | Device cart IDs: added cart-12; removed cart-3" {
		t.Errorf("changed row says %q", got)
	}
	if got := attr(rows.First().Find("a"), "href"); got != "/associations/7" {
		t.Errorf("changed row links to %q", got)
	}
	if got := text(rows.Last().Find(`[data-testid="import-kind"]`)); got != "New" {
		t.Errorf("new row kind = %q", got)
	}
	apply := testid(doc, "import-apply")
	if got := text(apply); got != "Apply 2 changes" {
		t.Errorf("apply button = %q", got)
	}
	if got := attr(apply.Closest("form"), "action"); got != "/imports/ABC/apply" {
		t.Errorf("apply posts to %q", got)
	}
	if testid(doc, "import-errors").Length() != 0 {
		t.Error("an errors table without errors")
	}
}

func TestImportPreviewWithErrorsOffersNoApply(t *testing.T) {
	doc, _ := render(t, views.ImportPreviewPage(adminPage, views.ImportPreview{Preview: preview(true), ChangesPage: 1, ErrorsPage: 1}))
	if testid(doc, "import-apply").Length() != 0 {
		t.Error("Apply is offered while a row has errors")
	}
	if got := text(testid(doc, "import-blocked")); !strings.HasPrefix(got, "Nothing can be applied while 1 row has errors; nothing has been saved.") {
		t.Errorf("blocked note = %q", got)
	}
	errs := testid(doc, "import-error")
	if errs.Length() != 2 {
		t.Fatalf("%d error lines, want 2", errs.Length())
	}
	if got := texts(errs.First().Find("td")); got != "5 | (none) | displayName | Enter a display name." {
		t.Errorf("first error line = %q", got)
	}
	if got := texts(errs.Last().Find("td")); got != "5 | (none) | version | Enter a whole number from 0 to 2,147,483,647." {
		t.Errorf("second error line = %q", got)
	}
	if got := text(testid(doc, "import-summary")); got != "1 new, 1 changed, 40 unchanged, 1 with errors" {
		t.Errorf("summary = %q", got)
	}
}

func TestImportPreviewStates(t *testing.T) {
	applied := preview(false)
	applied.AppliedAt = when.Add(time.Minute)
	nothing := store.ImportPreview{ID: "N", Unchanged: 3, ExpiresAt: when.Add(time.Hour)}
	for _, c := range []struct {
		name, want, gone string
		v                views.ImportPreview
	}{
		{"applied", "Applied at 30 Jun 2025, 14:06 UTC.", "import-apply", views.ImportPreview{Preview: applied}},
		{"expired", "This preview expired at 30 Jun 2025, 15:05 UTC; nothing was saved.", "import-apply", views.ImportPreview{Preview: preview(false), Expired: true}},
		{"nothing", "Nothing to apply: every row holds what cartclass holds already.", "import-apply", views.ImportPreview{Preview: nothing}},
	} {
		v := c.v
		v.ChangesPage, v.ErrorsPage = 1, 1
		doc, _ := render(t, views.ImportPreviewPage(adminPage, v))
		if got := text(testid(doc, "import-action")); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: action says %q, want it to start %q", c.name, got, c.want)
		}
		if testid(doc, c.gone).Length() != 0 {
			t.Errorf("%s: %s is offered", c.name, c.gone)
		}
	}
}

func TestImportStaleNamesTheRows(t *testing.T) {
	v := views.ImportPreview{Preview: preview(false), ChangesPage: 1, ErrorsPage: 1, Stale: []store.StaleRow{
		{Row: 2, Name: "Science iPads", AssociationID: 7, Current: store.Association{ID: 7, UpdatedAt: when, UpdatedBy: store.Actor{Name: "Bo"}}},
		{Row: 3, Name: "Art", Current: store.Association{ID: 9, UpdatedAt: when, UpdatedBy: store.Actor{Name: "Cy"}}},
		{Row: 4, Name: "Old", AssociationID: 8, Gone: true},
		{Row: 5, Name: "Twin", AssociationID: 9, SameName: true, Current: store.Association{ID: 9}},
	}}
	doc, _ := render(t, views.ImportPreviewPage(adminPage, v))
	got := testid(doc, "import-stale").Find("li").Map(func(_ int, s *goquery.Selection) string { return text(s) })
	want := []string{
		"Row 2 (“Science iPads”): its association was changed by Bo at 30 Jun 2025, 14:05 UTC.",
		"Row 3 (“Art”): an association with this display name was created or renamed by Bo at 30 Jun 2025, 14:05 UTC.",
		"Row 4 (“Old”): its association was removed from cartclass.",
		"Row 5 (“Twin”): another association now has this display name, so the row no longer says which one it changes.",
	}
	want[1] = strings.Replace(want[1], "Bo", "Cy", 1)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stale rows say\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestImportPreviewPages(t *testing.T) {
	p := store.ImportPreview{ID: "P", ExpiresAt: when.Add(time.Hour)}
	for i := range 250 {
		p.Rows = append(p.Rows, store.ImportRow{Row: i + 2, Kind: store.ImportNew, Name: "n" + strings.Repeat("x", i%3)})
		p.New++
	}
	doc, _ := render(t, views.ImportPreviewPage(adminPage, views.ImportPreview{Preview: p, ChangesPage: 3, ErrorsPage: 1}))
	rows := testid(doc, "import-change")
	if rows.Length() != 50 {
		t.Errorf("page 3 of 250 rows shows %d, want 50", rows.Length())
	}
	if got := text(rows.First().Find("td").First()); got != "202" {
		t.Errorf("page 3 starts at row %q, want 202", got)
	}
	if got := text(doc.Find(".pager-status")); got != "Rows 201–250 of 250" {
		t.Errorf("pager says %q", got)
	}
	if got := attr(doc.Find(`.pager a[rel="prev"]`), "href"); got != "/imports/P?changes=2" {
		t.Errorf("previous page is %q", got)
	}
}

func TestImportFormShowsTheFileError(t *testing.T) {
	doc, _ := render(t, views.ImportPage(adminPage, views.ImportForm{Error: "The file is empty. Choose the CSV file to import.", MaxRows: 5000}))
	if got := text(testid(doc, "error-file")); got != "The file is empty. Choose the CSV file to import." {
		t.Errorf("file error = %q", got)
	}
	in := doc.Find("#file")
	if attr(in, "aria-invalid") != "true" || attr(in, "aria-describedby") != "file-hint file-error" {
		t.Errorf("file input is not marked invalid: %v", in.Nodes[0].Attr)
	}
	if doc.Find(`label[for="file"]`).Length() != 1 {
		t.Error("the file input has no label")
	}
	if got := attr(in.Closest("form"), "enctype"); got != "multipart/form-data" {
		t.Errorf("form enctype = %q", got)
	}
}

func TestImportPreviewWarnsOfASharedName(t *testing.T) {
	p := preview(false)
	p.Rows[1].SameName = 2
	doc, _ := render(t, views.ImportPreviewPage(adminPage, views.ImportPreview{Preview: p, ChangesPage: 1, ErrorsPage: 1}))
	if got := text(testid(doc, "import-same-name")); !strings.HasPrefix(got, "2 associations already have this display name, so this row adds another.") {
		t.Errorf("shared-name warning = %q", got)
	}
	p.AppliedAt = when
	doc, _ = render(t, views.ImportPreviewPage(adminPage, views.ImportPreview{Preview: p, ChangesPage: 1, ErrorsPage: 1}))
	if testid(doc, "import-same-name").Length() != 0 {
		t.Error("the warning is still shown once the import was applied")
	}
}
