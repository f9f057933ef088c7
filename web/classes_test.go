package web_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/cartclass/cartclass/web/devidp"
)

// Class names from Microsoft Graph, against the emulator with the real push worker: read
// with the reads of Intune, offered while typing, named beside ids, and off (with a note)
// when Graph refuses.

// classesNote is the sync panel's sentence about class names.
func (g *graphEnv) classesNote(t *testing.T) string {
	t.Helper()
	return strings.Join(strings.Fields(g.page(t, "/sync").Find(`[data-testid="classes-note"]`).Text()), " ")
}

// readClasses presses Refresh from Intune and waits until the panel's classes note holds
// want.
func (g *graphEnv) readClasses(t *testing.T, want string) {
	t.Helper()
	if h := do(t, g.admin, "POST", g.url+"/sync/refresh", url.Values{}, nil); h.status != http.StatusSeeOther {
		t.Fatalf("refresh = %d", h.status)
	}
	eventually(t, "the classes note to say "+want, func() bool { return strings.Contains(g.classesNote(t), want) })
}

// suggestions are the options a finder shows for q, as text.
func (g *graphEnv) suggestions(t *testing.T, c *http.Client, kind, q string) (int, []string) {
	t.Helper()
	h := do(t, c, "GET", g.url+"/suggest/"+kind+"?q="+url.QueryEscape(q), nil, map[string]string{"HX-Request": "true"})
	if h.status != http.StatusOK {
		return h.status, nil
	}
	var out []string
	parseDoc(t, h.body).Find(`[role="option"]`).Each(func(_ int, s *goquery.Selection) {
		out = append(out, strings.Join(strings.Fields(s.Text()), " "))
	})
	return h.status, out
}

// items is the text of each element, joined with ", ".
func items(sel *goquery.Selection) string {
	var out []string
	sel.Each(func(_ int, s *goquery.Selection) { out = append(out, strings.Join(strings.Fields(s.Text()), " ")) })
	return strings.Join(out, ", ")
}

func classByCode(t *testing.T, code string) graph.Class {
	t.Helper()
	for _, c := range emulator.DefaultClasses() {
		if c.ClassCode == code {
			return c
		}
	}
	t.Fatalf("no default class %s", code)
	return graph.Class{}
}

// classesOn is the environment of the tests about class names (testEnv turns them off).
var classesOn = map[string]string{"CARTCLASS_EDU_CLASSES": "on"}

func TestClassSuggestionsAndNames(t *testing.T) {
	g := newGraphEnvWith(t, classesOn)
	g.readClasses(t, "310 classes read from Microsoft Graph")
	sci := classByCode(t, "SCI-7B")

	// By name, by code, by id; prefix matches first; nothing for nothing.
	_, got := g.suggestions(t, g.admin, "classes", "7b sci")
	if len(got) != 1 || got[0] != "7B Science · SCI-7B "+sci.ID {
		t.Errorf("suggestions for “7b sci” = %q", got)
	}
	if _, got := g.suggestions(t, g.admin, "classes", "sci-7"); len(got) != 5 || !strings.HasPrefix(got[0], "7A Science · SCI-7A") {
		t.Errorf("suggestions for “sci-7” = %q; want the five year-7 science classes, 7A first", got)
	}
	if _, got := g.suggestions(t, g.admin, "classes", sci.ID[:13]); len(got) != 1 || !strings.Contains(got[0], "SCI-7B") {
		t.Errorf("suggestions for an id's start = %q", got)
	}
	if _, got := g.suggestions(t, g.admin, "classes", "7"); len(got) != 12 {
		t.Errorf("suggestions for “7” = %d options, want the limit of 12", len(got))
	}
	if _, got := g.suggestions(t, g.admin, "classes", "  "); len(got) != 0 {
		t.Errorf("suggestions for blanks = %q", got)
	}
	if _, got := g.suggestions(t, g.admin, "classes", "zebrafinch"); len(got) != 1 || !strings.HasPrefix(got[0], "No class matches “zebrafinch”") {
		t.Errorf("suggestions for no match = %q", got)
	}
	viewer := g.browser(t)
	g.login(t, viewer, devidp.SubjectViewer, "/")
	if status, _ := g.suggestions(t, viewer, "classes", "7b"); status != http.StatusForbidden {
		t.Errorf("a viewer's suggestions = %d, want 403", status)
	}

	// Names beside ids on the detail page, and a soft warning for an id that is no class.
	id := g.create(t, url.Values{"displayName": {"7B iPads"}, "version": {"1"}, "deviceCartIds": {"cart-1"},
		"classroomIds": {sci.ID + "\nroom-101"}})
	d := g.page(t, "/associations/"+strconv.FormatInt(id, 10))
	var rooms []string
	d.Find(`[data-testid="prop-classroomIds"] li`).Each(func(_ int, s *goquery.Selection) {
		rooms = append(rooms, strings.Join(strings.Fields(s.Text()), " "))
	})
	if len(rooms) != 2 || rooms[0] != sci.ID+" · 7B Science" || rooms[1] != "room-101" {
		t.Errorf("classrooms on the detail page = %q", rooms)
	}
	if got := strings.Join(strings.Fields(d.Find(`[data-testid="warning-rooms"]`).Text()), " "); got != "room-101 is not a class in Microsoft Graph (a typo, or a class that is not in the list cartclass can read)." {
		t.Errorf("unknown-class warning = %q", got)
	}

	// Hostile names from Graph are text.
	g.emu.SetClasses([]graph.Class{{ID: "evil-1", DisplayName: `<script>alert(1)</script>`, ClassCode: `"><img src=x>`}})
	g.readClasses(t, "1 class read")
	h := do(t, g.admin, "GET", g.url+"/suggest/classes?q=evil", nil, map[string]string{"HX-Request": "true"})
	if strings.Contains(h.body, "<script>alert") || strings.Contains(h.body, "<img") {
		t.Errorf("a class name from Graph is rendered as HTML: %.300s", h.body)
	}
	if !strings.Contains(parseDoc(t, h.body).Text(), `<script>alert(1)</script>`) {
		t.Errorf("the hostile class name is not shown as text: %.300s", h.body)
	}
}

// Graph refusing the classes (403) turns class names off with a note naming the
// permission; pushing goes on.
func TestClassesRefusedTurnsNamesOff(t *testing.T) {
	g := newGraphEnvWith(t, classesOn)
	g.emu.SetClassesForbidden(true)
	g.readClasses(t, "Class names are off")
	if note := g.classesNote(t); !strings.Contains(note, "EduRoster.ReadBasic (delegated)") {
		t.Errorf("the note does not name the permission: %q", note)
	}
	if _, got := g.suggestions(t, g.admin, "classes", "7b"); len(got) != 1 || !strings.HasPrefix(got[0], "Class names are off") {
		t.Errorf("suggestions while off = %q", got)
	}
	id := g.create(t, url.Values{"displayName": {"Lab"}, "version": {"1"}, "classroomIds": {classByCode(t, "SCI-7B").ID}})
	g.waitState(t, id, "synced")
	d := g.page(t, "/associations/"+strconv.FormatInt(id, 10))
	if d.Find(`[data-testid="class-name"]`).Length() != 0 || d.Find(`[data-testid="warning-rooms"]`).Length() != 0 {
		t.Error("class names or unknown-class warnings are shown while class names are off")
	}
	// A read that then fails another way (here a 503) does not turn them back on: only a
	// read that succeeds shows the permission granted.
	g.emu.SetClassesForbidden(false)
	g.emu.Inject(emulator.Fault{Path: "/education/classes", Status: http.StatusServiceUnavailable, Count: 1})
	if h := do(t, g.admin, "POST", g.url+"/sync/refresh", url.Values{}, nil); h.status != http.StatusSeeOther {
		t.Fatal(h.status)
	}
	eventually(t, "the 503 to be answered", func() bool {
		for _, r := range g.emu.Requests() {
			if strings.Contains(r.Path, "/education/classes") && r.Status == http.StatusServiceUnavailable {
				return true
			}
		}
		return false
	})
	// The worker records the failure right after that answer: for a while after it, the
	// note must keep saying off (with the bug it said the read had failed, names on).
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if note := g.classesNote(t); !strings.HasPrefix(note, "Class names are off") {
			t.Fatalf("after a 403 and then a 503, the note says %q; want names still off", note)
		}
	}
	// Granted again: the next read turns them back on.
	g.readClasses(t, "310 classes read")

	// A 429 on the classes fails that read alone: pushing to Intune is not paused.
	g.emu.Inject(emulator.Fault{Path: "/education/classes", Status: http.StatusTooManyRequests, RetryAfter: "60", Count: 1})
	g.readClasses(t, "The last read of the school's classes failed")
	id2 := g.create(t, url.Values{"displayName": {"After the 429"}, "version": {"1"}})
	g.waitState(t, id2, "synced")
}

// CARTCLASS_EDU_CLASSES=off: no class is requested from Graph, the scope is not asked for,
// and the panel says so.
func TestClassesOff(t *testing.T) {
	g := newGraphEnvWith(t, map[string]string{"CARTCLASS_EDU_CLASSES": "off"})
	if h := do(t, g.admin, "POST", g.url+"/sync/refresh", url.Values{}, nil); h.status != http.StatusSeeOther {
		t.Fatal(h.status)
	}
	eventually(t, "a read", func() bool {
		return strings.Contains(g.page(t, "/sync").Find(`[data-testid="last-read"]`).Text(), "Intune last read")
	})
	if note := g.classesNote(t); !strings.HasPrefix(note, "Class names are off (CARTCLASS_EDU_CLASSES=off)") {
		t.Errorf("note = %q", note)
	}
	for _, r := range g.emu.Requests() {
		if strings.Contains(r.Path, "/education/") {
			t.Errorf("Graph was asked for %s %s", r.Method, r.Path)
		}
	}
	// The form offers no class finder (it could only say "off"), but still the carts in use.
	d := g.page(t, "/associations/new")
	if d.Find(`[data-testid="find-classroomIds"]`).Length() != 0 || d.Find(`[data-testid="find-deviceCartIds"]`).Length() != 1 {
		t.Errorf("finders with class names off: classes %d, carts %d; want 0 and 1",
			d.Find(`[data-testid="find-classroomIds"]`).Length(), d.Find(`[data-testid="find-deviceCartIds"]`).Length())
	}
}

// The Carts and Classrooms pages against the associations saved: each cart with the rooms
// it serves, each room with its class name and carts, searchable, linking to the
// associations; viewers see them too. And the cart suggestions and warnings.
func TestCartsAndClassroomsPages(t *testing.T) {
	g := newGraphEnvWith(t, classesOn)
	g.readClasses(t, "310 classes read")
	sci, art := classByCode(t, "SCI-7B"), classByCode(t, "ART-8A")
	a := g.create(t, url.Values{"displayName": {"Science iPads"}, "version": {"1"}, "deviceCartIds": {"cart-12\ncart-13"}, "classroomIds": {sci.ID}})
	b := g.create(t, url.Values{"displayName": {"Art laptops"}, "version": {"1"}, "deviceCartIds": {"cart-12"}, "classroomIds": {art.ID + "\nroom-9"}})

	viewer := g.browser(t)
	g.login(t, viewer, devidp.SubjectViewer, "/")
	h := do(t, viewer, "GET", g.url+"/carts", nil, nil)
	if h.status != http.StatusOK {
		t.Fatalf("viewer's Carts page = %d", h.status)
	}
	d := parseDoc(t, h.body)
	var carts []string
	d.Find(`[data-testid="cart-row"]`).Each(func(_ int, s *goquery.Selection) {
		carts = append(carts, s.Find(`[data-testid="cart-id"]`).Text()+": "+items(s.Find("td").Eq(1).Find("li"))+" | "+items(s.Find("td").Eq(2).Find("li")))
	})
	want := []string{
		// Rooms in id order (the store's), each with its class's name.
		"cart-12: " + sci.ID + " · 7B Science, " + art.ID + " · 8A Art, room-9 | Art laptops, Science iPads",
		"cart-13: " + sci.ID + " · 7B Science | Science iPads",
	}
	if strings.Join(carts, "\n") != strings.Join(want, "\n") {
		t.Errorf("Carts page:\n%s\nwant\n%s", strings.Join(carts, "\n"), strings.Join(want, "\n"))
	}
	if href, _ := d.Find(`[data-testid="cart-row"] [data-testid="assoc-link"]`).Last().Attr("href"); href != "/associations/"+strconv.FormatInt(a, 10) {
		t.Errorf("cart-12's last association links to %q", href)
	}

	d = g.page(t, "/classrooms?q=7B+Science")
	if n := d.Find(`[data-testid="classroom-row"]`).Length(); n != 1 {
		t.Fatalf("Classrooms for “7B Science”: %d rows", n)
	}
	if got := items(d.Find(`[data-testid="classroom-row"] td`).Eq(1).Find("li")); got != "cart-12, cart-13" {
		t.Errorf("carts serving 7B Science = %q", got)
	}
	if n := g.page(t, "/classrooms?q=cart-13").Find(`[data-testid="classroom-row"]`).Length(); n != 1 {
		t.Errorf("Classrooms found by a cart: %d rows, want 1", n)
	}
	if got := g.page(t, "/classrooms?q=zebrafinch").Find(`[data-testid="no-results"]`).Text(); !strings.Contains(got, "No classroom matches “zebrafinch”") {
		t.Errorf("no match says %q", got)
	}

	// Carts in use are suggested with how many rooms they serve; a shared cart and a
	// shared name are soft warnings on the detail page.
	if _, got := g.suggestions(t, g.admin, "carts", "cart-1"); strings.Join(got, "|") != "cart-12 serves 3 rooms|cart-13 serves 1 room" {
		t.Errorf("cart suggestions = %q", got)
	}
	c := g.create(t, url.Values{"displayName": {"Art laptops"}, "version": {"1"}, "deviceCartIds": {"cart-13"}})
	d = g.page(t, "/associations/"+strconv.FormatInt(c, 10))
	if got := strings.Join(strings.Fields(d.Find(`[data-testid="warning-cart"]`).Text()), " "); got != "cart-13 also serves Science iPads ." && got != "cart-13 also serves Science iPads." {
		t.Errorf("shared-cart warning = %q", got)
	}
	if got := d.Find(`[data-testid="warning-name"] a`).AttrOr("href", ""); got != "/associations/"+strconv.FormatInt(b, 10) {
		t.Errorf("same-name warning links to %q", got)
	}
}
