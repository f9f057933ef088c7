package web_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/cartclass/cartclass/push"
	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/web"
	"github.com/cartclass/cartclass/web/devidp"
)

// graphEnv is cartclass pushing to the Graph emulator with the signed-in admin's token.
type graphEnv struct {
	*authEnv
	emu   *emulator.Emulator
	admin *http.Client
}

func newGraphEnv(t *testing.T, emuOpts ...emulator.Option) *graphEnv {
	t.Helper()
	return newGraphEnvWith(t, nil, emuOpts...)
}

// newGraphEnvWith is newGraphEnv with extra CARTCLASS_* variables.
func newGraphEnvWith(t *testing.T, env map[string]string, emuOpts ...emulator.Option) *graphEnv {
	t.Helper()
	return newGraphEnvIDP(t, nil, env, emuOpts...)
}

func newGraphEnvIDP(t *testing.T, idpCfg func(*devidp.Config), env map[string]string, emuOpts ...emulator.Option) *graphEnv {
	t.Helper()
	return newGraphEnvWiring(t, idpCfg, env, nil, nil, emuOpts...)
}

// newGraphEnvWiring is newGraphEnvIDP with options for the Graph client and the server
// besides (the metrics test counts Graph requests through a transport of its own).
func newGraphEnvWiring(t *testing.T, idpCfg func(*devidp.Config), env map[string]string, gcOpts []graph.Option, webOpts []web.Option, emuOpts ...emulator.Option) *graphEnv {
	t.Helper()
	emu := emulator.New(emuOpts...)
	gsrv := httptest.NewServer(emu)
	t.Cleanup(gsrv.Close)
	gc, err := graph.New(gsrv.URL+emulator.BasePath, gcOpts...)
	if err != nil {
		t.Fatal(err)
	}
	e := newAuthEnvIDP(t, idpCfg, env, append(webOpts,
		web.WithGraph(gc, push.WithBackoff(10*time.Millisecond, 100*time.Millisecond), push.WithPermissionRecheck(time.Hour)))...)
	g := &graphEnv{authEnv: e, emu: emu, admin: e.browser(t)}
	e.login(t, g.admin, devidp.SubjectAdmin, "/")
	return g
}

// create saves a new association as the admin and returns its local id.
func (g *graphEnv) create(t *testing.T, form url.Values) int64 {
	t.Helper()
	h := do(t, g.admin, "POST", g.url+"/associations", form, nil)
	if h.status != http.StatusSeeOther {
		t.Fatalf("create = %d %.300s", h.status, h.body)
	}
	id, err := strconv.ParseInt(h.location[strings.LastIndex(h.location, "/")+1:], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// waitState polls the detail page's sync fragment, as the browser does, until the
// association reaches state, and returns the fragment.
func (g *graphEnv) waitState(t *testing.T, id int64, state string) hop {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h := do(t, g.admin, "GET", g.url+"/associations/"+strconv.FormatInt(id, 10)+"/sync", nil, map[string]string{"HX-Request": "true"})
		if strings.Contains(h.body, `data-sync-state="`+state+`"`) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("association %d never reached %s; last fragment: %.600s", id, state, h.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitBanner reloads the list, as an admin would, until it shows the admins' banner, and
// returns its text ("" if none appeared within 10 s).
func (g *graphEnv) waitBanner(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		h := do(t, g.admin, "GET", g.url+"/associations", nil, nil)
		if banner := parseDoc(t, h.body).Find(`[data-testid="banner"]`).Text(); banner != "" {
			return banner
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ""
}

func (g *graphEnv) writes() []emulator.Request {
	var out []emulator.Request
	for _, r := range g.emu.Requests() {
		if r.Method == "POST" || r.Method == "PATCH" {
			out = append(out, r)
		}
	}
	return out
}

func bodyOf(t *testing.T, r emulator.Request) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("%s body %q: %v", r.Method, r.Body, err)
	}
	return m
}

func TestSaveReachesGraph(t *testing.T) {
	g := newGraphEnv(t)
	id := g.create(t, url.Values{"displayName": {"Room 12 iPads"}, "description": {"Science"}, "version": {"1"},
		"deviceCartIds": {"cart-1\ncart-2"}, "classroomIds": {"r12"}})

	// While waiting the panel polls itself; once synced the answer stops polling.
	h := g.waitState(t, id, store.SyncSynced)
	d := parseDoc(t, h.body)
	if _, polling := d.Find("#sync-status").Attr("hx-trigger"); polling {
		t.Error("a synced panel still polls")
	}
	objs := g.emu.Objects()
	if len(objs) != 1 {
		t.Fatalf("Graph holds %d objects, want 1", len(objs))
	}
	if got := strings.TrimSpace(d.Find(`[data-testid="graph-id"]`).Text()); got != objs[0].ID {
		t.Errorf("page shows Graph id %q, Graph has %q", got, objs[0].ID)
	}
	w := g.writes()
	if len(w) != 1 || w[0].Method != "POST" {
		t.Fatalf("Graph received %d writes, want one POST", len(w))
	}
	want := map[string]any{"@odata.type": "#microsoft.graph.cartToClassAssociation", "version": 1.0, "displayName": "Room 12 iPads",
		"description": "Science", "deviceCartIds": []any{"cart-1", "cart-2"}, "classroomIds": []any{"r12"}}
	if got := bodyOf(t, w[0]); !jsonEqual(got, want) {
		t.Errorf("POST body = %v, want %v", got, want)
	}

	// Edit the description only: one PATCH carrying only the description.
	h = do(t, g.admin, "POST", g.url+"/associations/"+strconv.FormatInt(id, 10), url.Values{"displayName": {"Room 12 iPads"},
		"description": {"Science block"}, "version": {"1"}, "deviceCartIds": {"cart-1\ncart-2"}, "classroomIds": {"r12"}, "revision": {"1"}}, nil)
	if h.status != http.StatusSeeOther {
		t.Fatalf("update = %d", h.status)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(g.writes()) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	g.waitState(t, id, store.SyncSynced)
	w = g.writes()
	if len(w) != 2 || w[1].Method != "PATCH" {
		t.Fatalf("writes after edit = %d, want POST then PATCH", len(w))
	}
	if got := bodyOf(t, w[1]); !jsonEqual(got, map[string]any{"@odata.type": "#microsoft.graph.cartToClassAssociation", "description": "Science block"}) {
		t.Errorf("PATCH body = %v", got)
	}
	if objs := g.emu.Objects(); objs[0].Description != "Science block" {
		t.Errorf("Graph holds description %q", objs[0].Description)
	}
}

func TestGraphRejectionShownWithRetry(t *testing.T) {
	g := newGraphEnv(t)
	g.emu.Inject(emulator.Fault{Method: "POST", Count: 1, Status: 400, Code: "BadRequest", Message: "Display name is reserved"})
	id := g.create(t, url.Values{"displayName": {"Reserved"}, "version": {"1"}})
	h := g.waitState(t, id, store.SyncFailed)
	d := parseDoc(t, h.body)
	errText := d.Find(`[data-testid="sync-error"]`).Text()
	for _, want := range []string{"400", "BadRequest", "Display name is reserved", "Request ID"} {
		if !strings.Contains(errText, want) {
			t.Errorf("failed panel lacks %q: %q", want, errText)
		}
	}
	if d.Find(`[data-testid="retry"]`).Length() != 1 {
		t.Fatal("no Retry button for an admin")
	}

	// Viewers see the failure but cannot retry.
	viewer := g.browser(t)
	g.login(t, viewer, devidp.SubjectViewer, "/")
	vh := do(t, viewer, "GET", g.url+"/associations/"+strconv.FormatInt(id, 10), nil, nil)
	if parseDoc(t, vh.body).Find(`[data-testid="retry"]`).Length() != 0 {
		t.Error("viewer sees Retry")
	}
	if h := do(t, viewer, "POST", g.url+"/associations/"+strconv.FormatInt(id, 10)+"/retry", url.Values{}, nil); h.status != http.StatusForbidden {
		t.Errorf("viewer retry = %d", h.status)
	}

	// The list filters to what is not synced.
	lh := do(t, g.admin, "GET", g.url+"/associations?state=notsynced", nil, nil)
	if rows := parseDoc(t, lh.body).Find(`[data-testid="association-row"]`); rows.Length() != 1 || !strings.Contains(rows.Text(), "Failed") {
		t.Errorf("not-synced list = %d rows %q", rows.Length(), rows.Text())
	}

	if h := do(t, g.admin, "POST", g.url+"/associations/"+strconv.FormatInt(id, 10)+"/retry", url.Values{}, nil); h.status != http.StatusSeeOther {
		t.Fatalf("retry = %d", h.status)
	}
	g.waitState(t, id, store.SyncSynced)
	if n := len(g.emu.Objects()); n != 1 {
		t.Errorf("Graph holds %d objects after retry, want 1", n)
	}
	// A second click (or another admin's) after it went through changes nothing and leads
	// back to the association, not to a "not found" page.
	if h := do(t, g.admin, "POST", g.url+"/associations/"+strconv.FormatInt(id, 10)+"/retry", url.Values{}, nil); h.status != http.StatusSeeOther {
		t.Errorf("retry of a synced association = %d, want 303", h.status)
	}
	if h := do(t, g.admin, "POST", g.url+"/associations/99999/retry", url.Values{}, nil); h.status != http.StatusNotFound {
		t.Errorf("retry of a missing association = %d, want 404", h.status)
	}
	lh = do(t, g.admin, "GET", g.url+"/associations?state=notsynced", nil, nil)
	if n := parseDoc(t, lh.body).Find(`[data-testid="association-row"]`).Length(); n != 0 {
		t.Errorf("not-synced list after retry has %d rows", n)
	}
}

func TestDeletedInIntuneOffersRecreate(t *testing.T) {
	g := newGraphEnv(t)
	id := g.create(t, url.Values{"displayName": {"Room 3"}, "version": {"1"}})
	g.waitState(t, id, store.SyncSynced)
	old := g.emu.Objects()[0].ID
	g.emu.Reset() // someone deleted it in Intune

	h := do(t, g.admin, "POST", g.url+"/associations/"+strconv.FormatInt(id, 10), url.Values{"displayName": {"Room 3b"}, "version": {"1"}, "revision": {"1"}}, nil)
	if h.status != http.StatusSeeOther {
		t.Fatalf("update = %d", h.status)
	}
	h = g.waitState(t, id, store.SyncDeleted)
	d := parseDoc(t, h.body)
	if !strings.Contains(d.Text(), "deleted in Intune") || d.Find(`[data-testid="recreate"]`).Length() != 1 {
		t.Fatalf("deleted panel = %.400s", d.Text())
	}
	viewer := g.browser(t)
	g.login(t, viewer, devidp.SubjectViewer, "/")
	if h := do(t, viewer, "POST", g.url+"/associations/"+strconv.FormatInt(id, 10)+"/recreate", url.Values{}, nil); h.status != http.StatusForbidden {
		t.Errorf("viewer recreate = %d, want 403", h.status)
	}
	if a, _ := g.store.GetAssociation(t.Context(), id); a.Sync.State != store.SyncDeleted {
		t.Errorf("after a viewer's recreate the state is %q, want still deleted", a.Sync.State)
	}
	if h := do(t, g.admin, "POST", g.url+"/associations/"+strconv.FormatInt(id, 10)+"/recreate", url.Values{}, nil); h.status != http.StatusSeeOther {
		t.Fatalf("recreate = %d", h.status)
	}
	g.waitState(t, id, store.SyncSynced)
	objs := g.emu.Objects()
	if len(objs) != 1 || objs[0].ID == old || objs[0].DisplayName != "Room 3b" {
		t.Errorf("after re-create Graph holds %+v", objs)
	}
}

func TestPermissionPauseBannerAndPushNow(t *testing.T) {
	g := newGraphEnv(t)
	g.emu.Inject(emulator.Fault{Status: 403, Code: "Forbidden", Message: "Missing scope DeviceManagementServiceConfig.ReadWrite.All"})
	id := g.create(t, url.Values{"displayName": {"Room 9"}, "version": {"1"}})

	deadline := time.Now().Add(10 * time.Second)
	var panel hop
	for {
		panel = do(t, g.admin, "GET", g.url+"/sync", nil, nil)
		// The banner, not the page: a read of Intune refused by the same fault also names
		// the scope, in the read panel, before the push's refusal pauses the queue.
		banner := parseDoc(t, panel.body).Find(`[data-testid="banner"]`).Text()
		if strings.Contains(banner, "DeviceManagementServiceConfig.ReadWrite.All") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	d := parseDoc(t, panel.body)
	if !strings.Contains(d.Find(`[data-testid="banner"]`).Text(), "DeviceManagementServiceConfig.ReadWrite.All") {
		t.Errorf("no permission banner naming the scope: %q", d.Find(`[data-testid="banner"]`).Text())
	}
	if got := d.Find(`[data-testid="queue-depth"]`).Text(); got != "1" {
		t.Errorf("queue depth = %q, want 1", got)
	}
	if d.Find(`[data-testid="push-now"]`).Length() != 1 {
		t.Fatal("no Push now button while paused")
	}
	// The banner is on every page for admins, not for viewers.
	lh := do(t, g.admin, "GET", g.url+"/associations", nil, nil)
	if parseDoc(t, lh.body).Find(`[data-testid="banner"]`).Length() != 1 {
		t.Error("no banner on the list page")
	}
	viewer := g.browser(t)
	g.login(t, viewer, devidp.SubjectViewer, "/")
	if h := do(t, viewer, "GET", g.url+"/sync", nil, nil); h.status != http.StatusForbidden {
		t.Errorf("viewer /sync = %d", h.status)
	}
	if h := do(t, viewer, "POST", g.url+"/sync/push-now", url.Values{}, nil); h.status != http.StatusForbidden {
		t.Errorf("viewer push now = %d, want 403", h.status)
	}
	if st := parseDoc(t, do(t, g.admin, "GET", g.url+"/sync", nil, nil).body).Find(`[data-testid="queue-depth"]`).Text(); st != "1" {
		t.Errorf("queue depth after a viewer's push now = %q, want still 1", st)
	}
	if b := parseDoc(t, do(t, viewer, "GET", g.url+"/associations", nil, nil).body).Find(`[data-testid="banner"]`); b.Length() != 0 {
		t.Errorf("viewer sees the admins' banner: %q", b.Text())
	}

	// Consent granted: Push now resumes and the queue drains.
	g.emu.ClearFaults()
	if h := do(t, g.admin, "POST", g.url+"/sync/push-now", url.Values{}, nil); h.status != http.StatusSeeOther {
		t.Fatalf("push now = %d", h.status)
	}
	g.waitState(t, id, store.SyncSynced)
	panel = do(t, g.admin, "GET", g.url+"/sync", nil, nil)
	d = parseDoc(t, panel.body)
	if got := d.Find(`[data-testid="queue-depth"]`).Text(); got != "0" {
		t.Errorf("queue depth after recovery = %q", got)
	}
	if d.Find(`[data-testid="banner"]`).Length() != 0 {
		t.Error("banner still shown after recovery")
	}
}

// A token Graph refuses (401) is refreshed once with the admin's refresh token at the
// identity provider, and the push goes through with the new one.
func TestRefusedTokenIsRefreshed(t *testing.T) {
	var mu sync.Mutex
	var first string
	var seen []string
	g := newGraphEnv(t, emulator.WithAuthorizer(func(token string, _ *http.Request) int {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, token)
		if first == "" {
			first = token
		}
		if token == first {
			return http.StatusUnauthorized
		}
		return 0
	}))
	id := g.create(t, url.Values{"displayName": {"Room 4"}, "version": {"1"}})
	g.waitState(t, id, store.SyncSynced)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) < 2 || seen[len(seen)-1] == first {
		t.Errorf("tokens presented to Graph: %d, last equal to the refused one: %v", len(seen), seen[len(seen)-1] == first)
	}
	if n := len(g.emu.Objects()); n != 1 {
		t.Errorf("Graph holds %d objects", n)
	}
}

func jsonEqual(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// Delegated mode: a change whose author has no usable token waits (it does not fail), the
// banner names them, and signing in again sends it.
func TestChangeWaitsForAuthorsSignIn(t *testing.T) {
	g := newGraphEnv(t)
	db, err := openRaw(t, g.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("DELETE FROM user_tokens"); err != nil {
		t.Fatal(err)
	}
	id := g.create(t, url.Values{"displayName": {"Room 5"}, "version": {"1"}})
	banner := g.waitBanner(t)
	if !strings.Contains(banner, "Dev Admin") || !strings.Contains(banner, "sign-in expired") {
		t.Fatalf("banner = %q, want it to name Dev Admin's expired sign-in", banner)
	}
	if a, _ := g.store.GetAssociation(t.Context(), id); a.Sync.State != store.SyncWaiting {
		t.Errorf("state while waiting for sign-in = %q, want waiting", a.Sync.State)
	}
	if n := len(g.writes()); n != 0 {
		t.Errorf("%d writes sent without a token", n)
	}
	g.login(t, g.admin, devidp.SubjectAdmin, "/")
	g.waitState(t, id, store.SyncSynced)
}

// App-only mode: changes reach Graph with cartclass's own client-credentials token from the
// provider's token endpoint, never with the admin's.
func TestAppModePushesWithClientCredentials(t *testing.T) {
	var mu sync.Mutex
	var tokens []string
	g := newGraphEnvWith(t, map[string]string{"CARTCLASS_GRAPH_AUTH": "app"}, emulator.WithAuthorizer(func(token string, _ *http.Request) int {
		mu.Lock()
		defer mu.Unlock()
		tokens = append(tokens, token)
		return 0
	}))
	// The admin's own tokens are kept (roles are re-read with them) but never pushed with:
	// without them, the change still reaches Graph.
	db, err := openRaw(t, g.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("DELETE FROM user_tokens"); err != nil {
		t.Fatal(err)
	}
	id := g.create(t, url.Values{"displayName": {"Room 6"}, "version": {"1"}})
	g.waitState(t, id, store.SyncSynced)
	mu.Lock()
	defer mu.Unlock()
	if len(tokens) == 0 || tokens[0] == "" {
		t.Fatalf("tokens presented to Graph: %q", tokens)
	}
}

// App-only mode: when Graph refuses cartclass's own token even after a fresh one, nobody's
// sign-in can fix it: the queue pauses with a banner about the app's credentials, and the
// change waits instead of failing.
func TestAppModeRefusedCredentialsPauseTheQueue(t *testing.T) {
	g := newGraphEnvWith(t, map[string]string{"CARTCLASS_GRAPH_AUTH": "app"}, emulator.WithAuthorizer(func(string, *http.Request) int {
		return http.StatusUnauthorized
	}))
	id := g.create(t, url.Values{"displayName": {"Room 7"}, "version": {"1"}})
	banner := g.waitBanner(t)
	if !strings.Contains(banner, "credentials") || !strings.Contains(banner, "CARTCLASS_GRAPH_CLIENT_SECRET") || strings.Contains(banner, "Dev Admin") {
		t.Fatalf("banner = %q, want one about cartclass's own credentials", banner)
	}
	if a, _ := g.store.GetAssociation(t.Context(), id); a.Sync.State != store.SyncWaiting {
		t.Errorf("state = %q, want waiting", a.Sync.State)
	}
	if n := len(g.emu.Objects()); n != 0 {
		t.Errorf("Graph holds %d objects", n)
	}
	panel := parseDoc(t, do(t, g.admin, "GET", g.url+"/sync", nil, nil).body)
	if st := panel.Find(`[data-testid="sync-state"]`).Text(); !strings.Contains(st, "refused cartclass's own credentials") {
		t.Errorf("sync panel status = %q", st)
	}
	if panel.Find(`[data-testid="push-now"]`).Length() != 1 {
		t.Error("no Push now button while paused for credentials")
	}
}

// Several changes by one admin pushed at once, each needing a refresh: the provider rotates
// refresh tokens (a used one is refused), so the refreshes must take turns and use the
// latest token; otherwise all but one would wrongly wait for the admin to sign in again.
func TestConcurrentPushesShareOneRefresh(t *testing.T) {
	g := newGraphEnvIDP(t, func(c *devidp.Config) {
		// Under oauth2's 10 s expiry margin, so every push refreshes (but over 1 s: a
		// lifetime that rounds to expires_in=0 would mean "never expires").
		c.AccessTokenLifetime = 5 * time.Second
	}, nil)
	// Saved straight into the store (no kick), then one save through the page wakes the
	// worker, which claims several at the same instant.
	var ids []int64
	for i := range 8 {
		a, err := g.store.CreateAssociation(t.Context(), store.Fields{DisplayName: "Room " + strconv.Itoa(20+i), Version: 1},
			store.Actor{Subject: devidp.SubjectAdmin, Name: "Dev Admin"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.ID)
	}
	ids = append(ids, g.create(t, url.Values{"displayName": {"Room 30"}, "version": {"1"}}))
	for _, id := range ids {
		g.waitState(t, id, store.SyncSynced)
	}
	if n := len(g.emu.Objects()); n != len(ids) {
		t.Errorf("Graph holds %d objects, want %d", n, len(ids))
	}
}

// Push now by another admin lends their sign-in to the changes waiting for the author, and
// only until the author signs in again: after that the author's own token is used, and a
// later lapse waits for them again instead of silently pushing as the other admin.
func TestPushNowLendsUntilTheAuthorSignsIn(t *testing.T) {
	g := newGraphEnvWith(t, map[string]string{"CARTCLASS_ADMIN_SUBJECTS": devidp.SubjectNobody})
	db, err := openRaw(t, g.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	forget := func() {
		t.Helper()
		if _, err := db.Exec("DELETE FROM user_tokens WHERE subject = ?", devidp.SubjectAdmin); err != nil {
			t.Fatal(err)
		}
	}
	forget()
	first := g.create(t, url.Values{"displayName": {"Room 11"}, "version": {"1"}})
	if banner := g.waitBanner(t); !strings.Contains(banner, "Dev Admin") {
		t.Fatalf("banner = %q, want Dev Admin's expired sign-in", banner)
	}
	other := g.browser(t)
	g.login(t, other, devidp.SubjectNobody, "/")
	if h := do(t, other, "POST", g.url+"/sync/push-now", url.Values{}, nil); h.status != http.StatusSeeOther {
		t.Fatalf("push now = %d", h.status)
	}
	g.waitState(t, first, store.SyncSynced)

	// The author signs in again, then their token lapses once more.
	g.login(t, g.admin, devidp.SubjectAdmin, "/")
	forget()
	second := g.create(t, url.Values{"displayName": {"Room 12"}, "version": {"1"}})
	if banner := g.waitBanner(t); !strings.Contains(banner, "Dev Admin") {
		t.Fatalf("banner = %q, want Dev Admin's expired sign-in again", banner)
	}
	if a, _ := g.store.GetAssociation(t.Context(), second); a.Sync.State != store.SyncWaiting {
		t.Errorf("second change = %q, want waiting for its author (the loan ended at their sign-in)", a.Sync.State)
	}
	if n := len(g.emu.Objects()); n != 1 {
		t.Errorf("Graph holds %d objects, want only the lent one", n)
	}
}

// A 429 with Retry-After pauses pushing: admins see until when, in words, on the list and
// on the sync panel, with no button to override it.
func TestThrottleBanner(t *testing.T) {
	g := newGraphEnv(t)
	g.emu.Inject(emulator.Fault{Method: "POST", Status: http.StatusTooManyRequests, RetryAfter: "30", Count: 1})
	g.create(t, url.Values{"displayName": {"Room 8"}, "version": {"1"}})
	banner := g.waitBanner(t)
	if !regexp.MustCompile(`slow down: pushing is paused until \d\d:\d\d:\d\d UTC`).MatchString(banner) {
		t.Errorf("banner = %q", banner)
	}
	panel := parseDoc(t, do(t, g.admin, "GET", g.url+"/sync", nil, nil).body)
	if st := panel.Find(`[data-testid="sync-state"]`).Text(); !strings.Contains(st, "asked cartclass to slow down") {
		t.Errorf("sync panel status = %q", st)
	}
	if panel.Find(`[data-testid="push-now"]`).Length() != 0 {
		t.Error("Push now offered during a throttle, which it cannot lift")
	}
}

// The identity provider refusing an admin's refresh token (expired, revoked) makes their
// change wait for them, named in the banner; nothing is sent without a token.
func TestRefusedRefreshWaitsForSignIn(t *testing.T) {
	g := newGraphEnvIDP(t, func(c *devidp.Config) {
		c.AccessTokenLifetime = 5 * time.Second  // every push refreshes
		c.RefreshTokenLifetime = time.Nanosecond // and the refresh token is already expired
	}, nil)
	id := g.create(t, url.Values{"displayName": {"Room 9"}, "version": {"1"}})
	if banner := g.waitBanner(t); !strings.Contains(banner, "Dev Admin") || !strings.Contains(banner, "sign-in expired") {
		t.Fatalf("banner = %q, want Dev Admin's expired sign-in", banner)
	}
	if a, _ := g.store.GetAssociation(t.Context(), id); a.Sync.State != store.SyncWaiting {
		t.Errorf("state = %q, want waiting", a.Sync.State)
	}
	if n := len(g.writes()); n != 0 {
		t.Errorf("%d writes sent without a usable token", n)
	}
}
