package main

// The school's language in Chromium: classes suggested while typing, chosen by keyboard,
// named on the detail page and found on the Classrooms page; "/" reaching the search box.

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/cartclass/cartclass/web/devidp"
)

// classID is the emulator's id of the class with code, from its default set.
func classID(t *testing.T, code string) string {
	t.Helper()
	for _, c := range emulator.DefaultClasses() {
		if c.ClassCode == code {
			return c.ID
		}
	}
	t.Fatalf("the emulator has no class %s", code)
	return ""
}

// An admin types "7B" under Classroom IDs, picks 7B Science with the arrow keys and
// Enter, saves, sees the class name beside its id on the detail page, and finds on the
// Classrooms page which carts serve it.
func TestPickAClassByKeyboard(t *testing.T) {
	a := startApp(t, seed(t, scienceCarts))
	tb := newTab(t, a)
	tb.signIn(devidp.SubjectAdmin)
	// The classes are read with the first read of Intune, which the sign-in starts.
	tb.do(chromedp.Navigate(a.URL + "/sync"))
	tb.waitFor(`(document.querySelector('[data-testid=classes-note]')?.textContent || '').includes('classes read from Microsoft Graph')`)

	id := classID(t, "SCI-7B")
	tb.do(
		chromedp.Navigate(a.URL+"/associations/new"),
		chromedp.WaitVisible(tid("find-classroomIds")),
		chromedp.SendKeys(css("#displayName"), "7B Science iPads"),
		chromedp.SendKeys(css("#deviceCartIds"), "cart-sci-1"),
		chromedp.Focus(css("#classroomIds-find")),
	)
	tb.press("7B")
	// Every 7B class, in name order; the arrow keys walk down to 7B Science.
	tb.waitFor(`document.querySelectorAll('#classroomIds-suggestions [role=option]:not([aria-disabled=true])').length === 10`)
	if got := tb.text(`#classroomIds-suggestions [role=option] .suggest-main`); got != "7B Art · ART-7B" {
		t.Fatalf("first suggestion for 7B = %q, want “7B Art · ART-7B”", got)
	}
	if got := eval[string](tb, `document.querySelector('#classroomIds-find').getAttribute('aria-expanded')`); got != "true" {
		t.Errorf("combobox aria-expanded = %q while its list shows", got)
	}
	active := ""
	for range 12 {
		tb.press(kb.ArrowDown)
		active = eval[string](tb, `document.querySelector('#classroomIds-suggestions [aria-selected=true]')?.dataset.label || ''`)
		if active == "7B Science · SCI-7B" {
			break
		}
	}
	if active != "7B Science · SCI-7B" {
		t.Fatalf("ArrowDown never reached 7B Science (last active %q)", active)
	}
	if got := eval[string](tb, `document.querySelector('#classroomIds-find').getAttribute('aria-activedescendant') || ''`); got != "classroomIds-opt-9" {
		t.Errorf("aria-activedescendant = %q, want the 10th option", got)
	}
	tb.press("\r") // chooses; never submits the form
	if got := eval[string](tb, `document.querySelector('#classroomIds').value`); strings.TrimSpace(got) != id {
		t.Fatalf("Classroom IDs box holds %q after choosing, want the class id %s", got, id)
	}
	if got := tb.location(); !strings.HasSuffix(got, "/associations/new") {
		t.Fatalf("Enter in the finder left the form: now at %s", got)
	}
	if got := tb.focused(); got != "#classroomIds-find" {
		t.Errorf("focus after choosing is on %s, want the finder (to add another)", got)
	}
	tb.checkA11y("form with class suggestions")

	tb.do(chromedp.Click(tid("save")))
	tb.waitPath("/associations/2")
	if got := tb.text(`[data-testid=prop-classroomIds] li`); got != id+"· 7B Science" && got != id+" · 7B Science" {
		t.Errorf("detail page shows the classroom as %q, want its id with “· 7B Science”", got)
	}
	// The cart is also in the seeded association: a soft warning, the save happened.
	if got := tb.text(`[data-testid=warning-cart]`); !strings.Contains(got, "cart-sci-1 also serves Science block iPads") {
		t.Errorf("cart warning = %q", got)
	}

	tb.do(chromedp.Navigate(a.URL+"/classrooms?q=7B+Science"), chromedp.WaitVisible(tid("classroom-row")))
	if got := tb.text(`[data-testid=classroom-row] [data-testid=classroom-name]`); got != "7B Science" {
		t.Errorf("Classrooms page names the classroom %q", got)
	}
	if got := tb.text(`[data-testid=classroom-row] .id-list`); got != "cart-sci-1" {
		t.Errorf("Classrooms page: carts serving 7B Science = %q, want cart-sci-1", got)
	}
	tb.checkA11y("classrooms page")
}

// "/" on a page with a search box moves the focus there; typed into a field it is a slash.
func TestSlashFocusesSearch(t *testing.T) {
	a := startApp(t, seed(t, scienceCarts))
	tb := newTab(t, a)
	tb.signIn(devidp.SubjectAdmin)
	tb.do(chromedp.WaitVisible(tid("search")))
	tb.do(chromedp.Focus(tid("export-csv")))
	tb.press("/")
	if got := tb.focused(); got != "#q" {
		t.Errorf("after / the focus is on %s, want the search box", got)
	}
	if got := eval[string](tb, `document.querySelector('#q').value`); got != "" {
		t.Errorf("the / was typed into the search box: %q", got)
	}
	tb.do(chromedp.Navigate(a.URL+"/associations/new"), chromedp.Focus(css("#description")))
	tb.press("a/b")
	if got := eval[string](tb, `document.querySelector('#description').value`); got != "a/b" {
		t.Errorf("typing a/b into the description gave %q", got)
	}
}

// On a phone the signed-in name stays visible in the header (who is signed in matters on
// a shared device).
func TestSignedInNameOnAPhone(t *testing.T) {
	a := startApp(t, nil)
	tb := newTab(t, a)
	tb.resize(viewport{360, 740, true})
	tb.signIn(devidp.SubjectAdmin)
	box := eval[map[string]float64](tb, `(() => { const r = document.querySelector('[data-testid=user-name]').getBoundingClientRect(); return {w: r.width, h: r.height, right: r.right}; })()`)
	if box["w"] < 40 || box["h"] < 10 || box["right"] > 360 {
		t.Errorf("the signed-in name on a 360 px phone is %v (hidden, clipped or off screen)", box)
	}
	if got := tb.text(`[data-testid=user-name]`); got != "Dev Admin" {
		t.Errorf("name shown = %q", got)
	}
}
