package main

// cartclass as a mirror of Intune, in Chromium: deleting with a confirmation, and choosing
// between two versions of a field changed both here and in Intune.

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/web/devidp"
)

// graphRequestsOf is what the emulator received with method, oldest first.
func (a *app) graphRequestsOf(t *testing.T, method string) []emulator.Request {
	t.Helper()
	var out []emulator.Request
	for _, r := range a.graphRequests(t) {
		if r.Method == method {
			out = append(out, r)
		}
	}
	return out
}

// changeInIntune changes an object as a colleague in PowerShell would (the emulator's
// control endpoint: not an API request cartclass made).
func (a *app) changeInIntune(t *testing.T, graphID string, props map[string]any) {
	t.Helper()
	body, _ := json.Marshal(props)
	req, _ := http.NewRequest(http.MethodPatch, a.Emulator+"/_emulator/objects/"+graphID, bytes.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("emulator PATCH object %s: %s", graphID, res.Status)
	}
}

// graphID is the Graph id the detail page shows.
func (tb *tab) graphID() string {
	tb.t.Helper()
	id := tb.text(`[data-testid="graph-id"] code`)
	if id == "" {
		tb.t.Fatal("the detail page shows no Graph id")
	}
	return id
}

// Delete → confirmation naming the association → Delete association: it leaves the list
// at once, Graph receives exactly one DELETE, and the Deleted filter still shows it.
func TestDeleteAfterConfirmation(t *testing.T) {
	a := startApp(t, seed(t, scienceCarts))
	tb := newTab(t, a)
	tb.signIn(devidp.SubjectAdmin)
	tb.do(chromedp.Navigate(a.URL + "/associations/1"))
	tb.waitSynced()
	graphID := tb.graphID()

	tb.do(chromedp.Click(tid("delete")))
	tb.waitPath("/associations/1/delete")
	if got := tb.text(`[data-testid="delete-name"]`); got != scienceCarts.DisplayName {
		t.Errorf("the confirmation names %q; want %q", got, scienceCarts.DisplayName)
	}
	tb.checkA11y("delete confirmation")
	if n := len(a.graphRequestsOf(t, http.MethodDelete)); n != 0 {
		t.Fatalf("Graph received %d DELETEs before the confirmation", n)
	}
	tb.do(chromedp.Click(tid("confirm-delete")))
	tb.waitPath("/associations")
	if got := tb.text(`[data-testid="flash"]`); !strings.Contains(got, scienceCarts.DisplayName) {
		t.Errorf("flash %q; want it to name the association", got)
	}
	if n := tb.count(`[data-testid="association-row"]`); n != 0 {
		t.Errorf("the list still shows %d rows after the delete", n)
	}

	var deletes []emulator.Request
	for deadline := time.Now().Add(stepTimeout); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		if deletes = a.graphRequestsOf(t, http.MethodDelete); len(deletes) > 0 {
			break
		}
	}
	if len(deletes) != 1 || !strings.HasSuffix(deletes[0].Path, "/"+graphID) {
		t.Fatalf("Graph received DELETEs %+v; want exactly one, of %s", deletes, graphID)
	}
	var objs []map[string]any
	a.emulatorGet(t, "/_emulator/objects", &objs)
	if len(objs) != 0 {
		t.Errorf("Intune still holds %d objects", len(objs))
	}

	tb.do(chromedp.Navigate(a.URL + "/associations?state=deleted"))
	tb.do(chromedp.WaitVisible(tid("association-row")))
	if got := tb.text(`[data-testid="association-row"]`); !strings.Contains(got, scienceCarts.DisplayName) {
		t.Errorf("the Deleted filter shows %q", got)
	}
	tb.checkConsole()
}

// The same field changed in cartclass and in Intune: the detail page shows both values and
// nothing is sent until the admin chooses. Keep Intune's version sends nothing; Push my
// version sends one PATCH of that field.
func TestChooseBetweenVersions(t *testing.T) {
	other := scienceCarts
	other.DisplayName, other.DeviceCartIDs = "Library laptops", []string{"cart-lib-1"}
	a := startApp(t, seed(t, scienceCarts, other))
	tb := newTab(t, a)
	tb.signIn(devidp.SubjectAdmin)

	for id, choice := range map[string]string{"1": "keep-intune", "2": "push-mine"} {
		tb.do(chromedp.Navigate(a.URL + "/associations/" + id))
		tb.waitSynced()
		graphID := tb.graphID()
		a.changeInIntune(t, graphID, map[string]any{"description": "Changed in PowerShell " + id})
		patchesBefore := len(a.graphRequestsOf(t, http.MethodPatch))

		tb.do(chromedp.Navigate(a.URL + "/associations/" + id + "/edit"))
		tb.do(chromedp.WaitVisible(tid("association-form")))
		tb.do(chromedp.SetValue(css("#description"), "Changed in cartclass "+id))
		tb.do(chromedp.Click(tid("save")))
		tb.waitPath("/associations/" + id)
		// The worker reads the object before its PATCH and finds the field changed there.
		tb.waitFor(`document.querySelector('#sync-status')?.dataset.syncState === '` + store.SyncChanged + `'`)
		if got := tb.text(`[data-testid="drift-mine"] [data-field="description"] [data-testid="drift-value"]`); got != "Changed in cartclass "+id {
			t.Errorf("association %s: “in cartclass” shows %q", id, got)
		}
		if got := tb.text(`[data-testid="drift-intune"] [data-field="description"] [data-testid="drift-value"]`); got != "Changed in PowerShell "+id {
			t.Errorf("association %s: “in Intune” shows %q", id, got)
		}
		if n := len(a.graphRequestsOf(t, http.MethodPatch)); n != patchesBefore {
			t.Fatalf("association %s: %d PATCHes sent before the admin chose", id, n-patchesBefore)
		}
		tb.checkA11y("changed in Intune")

		tb.do(chromedp.Click(tid(choice)))
		tb.waitPath("/associations/" + id)
		tb.waitSynced()
		want := "Changed in PowerShell " + id
		if choice == "push-mine" {
			want = "Changed in cartclass " + id
			patches := a.graphRequestsOf(t, http.MethodPatch)
			if len(patches) != patchesBefore+1 {
				t.Fatalf("Push my version sent %d PATCHes; want 1", len(patches)-patchesBefore)
			}
			body := jsonBody(t, patches[len(patches)-1])
			if body["description"] != want || len(body) != 2 { // @odata.type + description
				t.Errorf("PATCH body %v; want only the description %q", body, want)
			}
		} else if n := len(a.graphRequestsOf(t, http.MethodPatch)); n != patchesBefore {
			t.Errorf("Keep Intune's version sent %d PATCHes; want none", n-patchesBefore)
		}
		if got := tb.text(`[data-testid="prop-description"]`); got != want {
			t.Errorf("association %s after %s: description %q; want %q", id, choice, got, want)
		}
		var objs []struct {
			ID          string `json:"id"`
			Description string `json:"description"`
		}
		a.emulatorGet(t, "/_emulator/objects", &objs)
		for _, o := range objs {
			if o.ID == graphID && o.Description != want {
				t.Errorf("Intune holds %q for association %s; want %q", o.Description, id, want)
			}
		}
	}
	tb.checkConsole()
}
