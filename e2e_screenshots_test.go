package main

// Screenshots of every main page at a desktop and a phone size, kept in docs/screenshots so
// changes to the look are reviewed as pictures. Regenerate them with
// `CARTCLASSTEST_SCREENSHOTS=1 go test -run TestScreenshots .` (task screenshots).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/cartclass/cartclass/web/devidp"
)

const screenshotDir = "docs/screenshots"

// viewport is a screen size the screenshots are taken at.
type viewport struct {
	width, height int64
	mobile        bool
}

var screenshotViewports = []viewport{{1280, 800, false}, {390, 844, true}}

// emulateMedia sets CSS media features for the tab, e.g. prefers-color-scheme: dark.
func (tb *tab) emulateMedia(features ...*emulation.MediaFeature) {
	tb.t.Helper()
	tb.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: features})
		return err
	}))
}

// resize sets the tab's viewport; phones get mobile emulation (the viewport meta applies).
func (tb *tab) resize(v viewport) {
	tb.t.Helper()
	if v.mobile {
		tb.do(chromedp.EmulateViewport(v.width, v.height, chromedp.EmulateMobile, chromedp.EmulateTouch))
	} else {
		tb.do(chromedp.EmulateViewport(v.width, v.height))
	}
}

// screenshot saves a full-page PNG of the tab as docs/screenshots/<name>-<w>x<h>.png.
func (tb *tab) screenshot(name string, v viewport) {
	tb.t.Helper()
	// Nothing is mid-transition, and no caret blinks in the picture.
	tb.do(chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.matches('input, textarea') && document.activeElement.blur()`))
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(screenshotDir, fmt.Sprintf("%s-%dx%d.png", name, v.width, v.height))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("wrote %s (%d KiB)", path, len(png)/1024)
}

// waitAllSynced reloads the list until every row says Synced (the list does not refresh
// itself), so the 30-row picture shows a settled state.
func (tb *tab) waitAllSynced(rows int) {
	tb.t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for {
		tb.do(chromedp.Navigate(tb.app.URL + "/associations"))
		if tb.count(`[data-testid="association-row"] .badge-synced`) == rows {
			return
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("not every association synced within %s", stepTimeout)
		}
		tb.app.waitGraphWrites(tb.t, rows)
	}
}

func TestScreenshots(t *testing.T) {
	if os.Getenv("CARTCLASSTEST_SCREENSHOTS") != "1" {
		t.Skip("set CARTCLASSTEST_SCREENSHOTS=1 to regenerate docs/screenshots (task screenshots)")
	}
	browser(t)
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	empty := startApp(t, nil)
	full := startApp(t, seed(t, thirtyAssociations()...))
	reduceMotion := &emulation.MediaFeature{Name: "prefers-reduced-motion", Value: "reduce"}

	for _, v := range screenshotViewports {
		// A fresh tab per size: the sign-in page needs one that is signed out.
		tb := newTab(t, empty)
		tb.expectStatus(422)
		tb.emulateMedia(reduceMotion)
		tb.resize(v)
		tb.do(chromedp.Navigate(empty.URL + "/signin"))
		tb.screenshot("signin", v)

		tb.signIn(devidp.SubjectAdmin)
		tb.do(chromedp.WaitVisible(tid("empty-state")))
		tb.screenshot("list-empty", v)

		tb.do(
			chromedp.Navigate(empty.URL+"/associations/new"),
			chromedp.SetValue(css("#description"), "Carts shared by the labs"),
			chromedp.SetValue(css("#deviceCartIds"), "cart-"+strings.Repeat("x", 124)+"\ncart-sci-2"),
			chromedp.SetValue(css("#classroomIds"), "lab-1\nlab-2"),
			chromedp.Click(tid("save")),
			chromedp.WaitVisible(tid("error-summary")),
		)
		tb.screenshot("form-errors", v)

		admin := newTab(t, full)
		admin.emulateMedia(reduceMotion)
		admin.resize(v)
		admin.signIn(devidp.SubjectAdmin)
		admin.waitAllSynced(30)
		admin.screenshot("list-30", v)

		admin.do(chromedp.Navigate(full.URL + "/associations/1"))
		admin.waitSynced()
		admin.screenshot("detail-synced", v)

		admin.do(chromedp.Navigate(full.URL + "/sync"))
		admin.do(chromedp.WaitVisible(tid("sync-stats")))
		admin.screenshot("sync", v)

		admin.do(chromedp.Navigate(full.URL + "/sessions"))
		admin.do(chromedp.WaitVisible(tid("sessions")))
		admin.screenshot("sessions", v)

		admin.do(chromedp.Navigate(full.URL + "/activity"))
		admin.do(chromedp.WaitVisible(css("main")))
		admin.screenshot("activity", v)
	}

	// Conflicts last, since they change the data the pictures above show: another admin
	// saves association 2 (then 3) while this one edits it.
	seeded := thirtyAssociations()
	for i, v := range screenshotViewports {
		id := i + 2
		admin, other := newTab(t, full), newTab(t, full)
		admin.expectStatus(409)
		admin.emulateMedia(reduceMotion)
		admin.resize(v)
		for _, tb := range []*tab{admin, other} {
			tb.signIn(devidp.SubjectAdmin)
			tb.do(chromedp.Navigate(fmt.Sprintf("%s/associations/%d/edit", full.URL, id)), chromedp.WaitVisible(tid("association-form")))
		}
		other.do(
			chromedp.SetValue(css("#displayName"), seeded[id-1].DisplayName+" (upper school)"),
			chromedp.Click(tid("save")),
		)
		other.waitPath(fmt.Sprintf("/associations/%d", id))
		admin.do(
			chromedp.SetValue(css("#description"), "Shared by Science; book them at the office"),
			chromedp.Click(tid("save")),
			chromedp.WaitVisible(tid("conflict")),
		)
		admin.screenshot("conflict", v)
	}

	// Mirroring Intune: the delete confirmation, the Deleted filter, and an association
	// changed in Intune and in cartclass on the same field.
	for i, v := range screenshotViewports {
		admin := newTab(t, full)
		admin.emulateMedia(reduceMotion)
		admin.resize(v)
		admin.signIn(devidp.SubjectAdmin)

		del := 10 + i
		admin.do(chromedp.Navigate(fmt.Sprintf("%s/associations/%d/delete", full.URL, del)), chromedp.WaitVisible(tid("delete-confirm")))
		admin.screenshot("delete-confirm", v)
		admin.do(chromedp.Click(tid("confirm-delete")))
		admin.waitPath("/associations")
		admin.do(chromedp.Navigate(full.URL+"/associations?state=deleted"), chromedp.WaitVisible(tid("association-row")))
		admin.screenshot("list-deleted", v)

		id := 20 + i
		admin.do(chromedp.Navigate(fmt.Sprintf("%s/associations/%d", full.URL, id)))
		admin.waitSynced()
		full.changeInIntune(t, admin.graphID(), map[string]any{"description": "Year 7 only this term (set in PowerShell)"})
		admin.do(
			chromedp.Navigate(fmt.Sprintf("%s/associations/%d/edit", full.URL, id)),
			chromedp.WaitVisible(tid("association-form")),
			chromedp.SetValue(css("#description"), "Shared by Science and Maths"),
			chromedp.Click(tid("save")),
		)
		admin.waitPath(fmt.Sprintf("/associations/%d", id))
		admin.waitFor(`document.querySelector('#sync-status')?.dataset.syncState === 'changed'`)
		admin.screenshot("changed-in-intune", v)
	}
	// The school's language: a class suggested while typing, and the Carts and Classrooms
	// lookups (the seeded classroom ids are not classes, so one association gets two).
	sci, maths := classID(t, "SCI-7B"), classID(t, "MAT-7B")
	for i, v := range screenshotViewports {
		admin := newTab(t, full)
		admin.emulateMedia(reduceMotion)
		admin.resize(v)
		admin.signIn(devidp.SubjectAdmin)
		if i == 0 {
			admin.do(chromedp.Navigate(full.URL + "/sync"))
			admin.waitFor(`(document.querySelector('[data-testid=classes-note]')?.textContent || '').includes('classes read from Microsoft Graph')`)
			admin.do(
				chromedp.Navigate(full.URL+"/associations/16/edit"),
				chromedp.WaitVisible(tid("association-form")),
				chromedp.SetValue(css("#classroomIds"), "room-116\n"+sci+"\n"+maths),
				chromedp.Click(tid("save")),
			)
			admin.waitPath("/associations/16")
		}
		admin.do(
			chromedp.Navigate(full.URL+"/associations/17/edit"),
			chromedp.WaitVisible(tid("find-classroomIds")),
			chromedp.Focus(css("#classroomIds-find")),
		)
		admin.press("7B")
		admin.waitFor(`document.querySelectorAll('#classroomIds-suggestions [role=option]').length > 3`)
		admin.press(kb.ArrowDown)
		admin.press(kb.ArrowDown)
		admin.screenshot("form-suggestions", v)

		admin.do(chromedp.Navigate(full.URL+"/classrooms"), chromedp.WaitVisible(tid("classroom-row")))
		admin.screenshot("classrooms", v)
		admin.do(chromedp.Navigate(full.URL+"/carts"), chromedp.WaitVisible(tid("cart-row")))
		admin.screenshot("carts", v)
	}

	// CSV import: a preview of changes with Apply, and one with rows that have errors.
	dir := t.TempDir()
	changes := filepath.Join(dir, "term-2-carts.csv")
	errs := filepath.Join(dir, "term-2-carts-draft.csv")
	writeShotFile(t, changes, "displayName,description,deviceCartIds,classroomIds\n"+
		"Art iPads,Art block; book them at reception,\"cart-16-a, cart-16-b, cart-16-c\",room-116\n"+
		"Drama laptops,Shared by the Drama department,cart-23-a,\"room-123, room-200\"\n"+
		"Computing Chromebooks,Shared by the Computing department,\"cart-27-a, cart-27-b\",room-127\n"+
		"Year 7 Science,Term 2 only,\"cart-40-a, cart-40-b\",\"room-140, room-141\"\n"+
		"Sixth form library,,cart-41-a,library-1\n")
	writeShotFile(t, errs, "displayName,version,deviceCartIds,classroomIds\n"+
		"Art iPads,1,\"cart-16-a, cart-16-b, cart-16-c\",room-116\n"+
		",1,cart-50-a,room-150\n"+
		"Drama iPads,two,cart-22-a,room-122\n"+
		"Year 7 Science,1,\"cart-40-a, cart-40-b\",\"room-140, room-141\"\n")
	for _, v := range screenshotViewports {
		admin := newTab(t, full)
		admin.emulateMedia(reduceMotion)
		admin.resize(v)
		admin.signIn(devidp.SubjectAdmin)
		for _, c := range []struct{ file, name string }{{changes, "import-preview"}, {errs, "import-errors"}} {
			admin.do(
				chromedp.Navigate(full.URL+"/imports"),
				chromedp.WaitVisible(tid("import-form")),
				chromedp.SetUploadFiles(css("#file"), []string{c.file}),
				chromedp.Click(tid("import-preview")),
				chromedp.WaitVisible(tid("import-counts")),
			)
			admin.screenshot(c.name, v)
		}
	}
}

// writeShotFile writes a test's file or fails it.
func writeShotFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
