package main

// CSV import in Chromium: upload a file, read the preview, apply it, and see the changes
// reach Graph and the associations' history.

import (
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/cartclass/cartclass/web/devidp"
)

// e2eImportFile is the name the browser uploads the import file under.
const e2eImportFile = "carts-autumn.csv"

// e2eImportChange is one row of the preview's "What would change" table.
type e2eImportChange struct {
	Name  string   `json:"name"`
	Kind  string   `json:"kind"`
	Lines []string `json:"lines"`
}

// importChanges reads the preview's table of changes, top to bottom.
func (tb *tab) importChanges() []e2eImportChange {
	tb.t.Helper()
	return eval[[]e2eImportChange](tb, `Array.from(document.querySelectorAll('[data-testid=import-change]')).map(tr => ({
		name: tr.querySelector('[data-testid=import-change-name]').textContent.trim(),
		kind: tr.querySelector('[data-testid=import-kind]').textContent.trim(),
		lines: Array.from(tr.querySelectorAll('[data-testid=import-change-lines] li')).map(li => li.textContent.trim()),
	}))`)
}

// Upload → preview → Apply: a file that changes one association (found by its graphId),
// leaves another as it is (found by its display name) and adds one. The preview counts and
// describes exactly that; Apply saves it, Graph receives one POST and one PATCH (of only
// the changed properties), and the changed association's History names the file.
func TestImportCSVPreviewApply(t *testing.T) {
	library := scienceCarts
	library.DisplayName, library.DeviceCartIDs = "Library laptops", []string{"cart-lib-1"}
	a := startApp(t, seed(t, scienceCarts, library))
	tb := newTab(t, a)
	tb.signIn(devidp.SubjectAdmin)
	// The seeded associations go to Graph once the admin has signed in: wait for that, so
	// that the import's change is a PATCH of what Graph holds.
	tb.do(chromedp.Navigate(a.URL + "/associations/1"))
	tb.waitSynced()
	graphID := tb.graphID()
	tb.do(chromedp.Navigate(a.URL + "/associations/2"))
	tb.waitSynced()
	before := a.graphWrites(t)
	if len(before) != 2 {
		t.Fatalf("Graph received %d writes for the 2 seeded associations; want their 2 POSTs", len(before))
	}

	file := filepath.Join(t.TempDir(), e2eImportFile)
	csv := "displayName,description,version,deviceCartIds,classroomIds,graphId\r\n" +
		// Found by graphId: the description changes and a cart is added.
		`Science block iPads,Two carts shared by the labs; charge them on Fridays,1,"cart-sci-1, cart-sci-2, cart-sci-3","lab-1, lab-2",` + strings.ToUpper(graphID) + "\r\n" +
		// Found by its display name, as an export wrote it: nothing changes.
		`Library laptops,Two carts shared by the labs,1,cart-lib-1,"lab-1, lab-2",` + "\r\n" +
		// New.
		`Music room laptops,Cart by the piano,2,cart-m1,music-1,` + "\r\n"
	if err := os.WriteFile(file, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}

	tb.do(chromedp.Navigate(a.URL + "/associations"))
	tb.do(chromedp.Click(tid("import-csv")))
	tb.waitPath("/imports")
	tb.do(chromedp.WaitVisible(tid("import-form")))
	tb.do(chromedp.SetUploadFiles(css("#file"), []string{file}))
	tb.do(chromedp.Click(tid("import-preview")))
	tb.waitFor(`location.pathname.startsWith('/imports/') && document.querySelector('[data-testid=import-counts]')`)
	previewPath := eval[string](tb, "location.pathname")

	if got := tb.text(`[data-testid="import-title"]`); got != "Import “"+e2eImportFile+"”" {
		t.Errorf("preview title %q", got)
	}
	for id, want := range map[string]string{"count-new": "1", "count-changed": "1", "count-unchanged": "1", "count-invalid": "0"} {
		if got := tb.text(`[data-testid="` + id + `"]`); got != want {
			t.Errorf("%s shows %q; want %s", id, got, want)
		}
	}
	if n := tb.count(`[data-testid="import-errors"]`); n != 0 {
		t.Errorf("the preview shows a table of errors")
	}
	wantChanges := []e2eImportChange{
		{Name: "Science block iPads", Kind: "Changed", Lines: []string{
			"Description: “Two carts shared by the labs” → “Two carts shared by the labs; charge them on Fridays”",
			"Device cart IDs: added cart-sci-3",
		}},
		{Name: "Music room laptops", Kind: "New", Lines: []string{
			"Display name: “Music room laptops”",
			"Description: “Cart by the piano”",
			"Version: 2",
			"Device cart IDs: cart-m1",
			"Classroom IDs: music-1",
		}},
	}
	if got := tb.importChanges(); !reflect.DeepEqual(got, wantChanges) {
		t.Errorf("the preview's changes\n got %+v\nwant %+v", got, wantChanges)
	}
	if n := len(a.graphWrites(t)); n != len(before) {
		t.Fatalf("Graph received %d writes before Apply", n-len(before))
	}
	tb.checkA11y("import preview")

	tb.do(chromedp.Click(tid("import-apply")))
	tb.waitPath(previewPath)
	if got := tb.text(`[data-testid="import-applied"]`); !strings.Contains(got, "2 changes saved and queued for Intune") {
		t.Errorf("after Apply the preview says %q", got)
	}
	if n := tb.count(`[data-testid="import-apply"]`); n != 0 {
		t.Errorf("the applied preview still offers Apply")
	}

	// Graph receives exactly one POST (the new association) and one PATCH (the changed one,
	// of only what changed); the unchanged one gets nothing.
	a.waitGraphWrites(t, len(before)+2)
	tb.do(chromedp.Navigate(a.URL + "/associations/3"))
	tb.waitSynced()
	if got := tb.text(`[data-testid="detail-title"]`); got != "Music room laptops" {
		t.Errorf("association 3 is %q; want the imported one", got)
	}
	tb.do(chromedp.Navigate(a.URL + "/associations/1"))
	tb.waitSynced()
	writes := a.graphWrites(t)[len(before):]
	if len(writes) != 2 {
		t.Fatalf("after Apply Graph received %d writes; want one POST and one PATCH: %+v", len(writes), writes)
	}
	slices.SortFunc(writes, func(x, y emulator.Request) int { return strings.Compare(x.Method, y.Method) })
	post, patch := writes[1], writes[0]
	if post.Method != http.MethodPost || patch.Method != http.MethodPatch {
		t.Fatalf("after Apply Graph received %s and %s; want a POST and a PATCH", writes[0].Method, writes[1].Method)
	}
	wantPost := wantJSON(t, `{"@odata.type": "#microsoft.graph.cartToClassAssociation",
		"displayName": "Music room laptops", "description": "Cart by the piano", "version": 2,
		"deviceCartIds": ["cart-m1"], "classroomIds": ["music-1"]}`)
	if got := jsonBody(t, post); !reflect.DeepEqual(got, wantPost) {
		t.Errorf("POST body\n got %v\nwant %v", got, wantPost)
	}
	if !strings.HasSuffix(patch.Path, "/"+graphID) {
		t.Errorf("PATCH of %s; want the changed association %s", patch.Path, graphID)
	}
	wantPatch := wantJSON(t, `{"@odata.type": "#microsoft.graph.cartToClassAssociation",
		"description": "Two carts shared by the labs; charge them on Fridays",
		"deviceCartIds": ["cart-sci-1", "cart-sci-2", "cart-sci-3"]}`)
	if got := jsonBody(t, patch); !reflect.DeepEqual(got, wantPatch) {
		t.Errorf("PATCH body\n got %v\nwant %v", got, wantPatch)
	}

	// The changed association's History names the file and what it changed.
	lines := eval[[]string](tb, `Array.from(document.querySelectorAll('[data-testid=history-entry]:first-child [data-testid=history-line]')).map(d => d.textContent.trim().replace(/\s+/g, ' '))`)
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "Dev Admin imported “"+e2eImportFile+"”") ||
		lines[1] != "Changed Description from “Two carts shared by the labs” to “Two carts shared by the labs; charge them on Fridays”" ||
		lines[2] != "Changed Device cart IDs: added cart-sci-3" {
		t.Errorf("the newest History entry reads %q; want the import of %s and its two changes", lines, e2eImportFile)
	}
	if got := tb.text(`[data-testid="prop-description"]`); got != "Two carts shared by the labs; charge them on Fridays" {
		t.Errorf("description shown as %q", got)
	}
	if n := len(a.graphWrites(t)); n != len(before)+2 {
		t.Errorf("Graph received %d writes in all; want %d", n, len(before)+2)
	}
}
