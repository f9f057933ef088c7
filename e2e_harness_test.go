package main

// The end-to-end suite drives Debian's Chromium through cartclass as it runs with -dev: the
// same run() as main, the built-in OpenID Connect provider and the Graph emulator, each on a
// free loopback port, with a fresh SQLite file per test. One Chromium process serves every
// test; each test gets its own browser context (cookies, storage, cache), so tests cannot see
// each other's sessions. Every tab fails its test on a JavaScript exception, a console error
// or a CSP violation.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/cartclass/cartclass/store"
)

// chromiumPath is Debian's Chromium, the browser CI installs.
const chromiumPath = "/usr/bin/chromium"

// stepTimeout bounds one wait in a test: long enough for a loaded 2-core CI machine, short
// enough that a broken page fails fast instead of hanging the suite.
const stepTimeout = 10 * time.Second

// shared is the one Chromium process of the test binary, started by the first test that
// needs it and stopped by TestMain.
var shared struct {
	once   sync.Once
	ctx    context.Context // a chromedp context whose browser is running
	err    error
	cancel func()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.cancel != nil {
		shared.cancel()
	}
	os.Exit(code)
}

// browser returns the shared browser's context, starting Chromium on first use. Without
// Chromium (or in -short mode) the test is skipped with how to get it.
func browser(t *testing.T) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end browser test: skipped in -short mode")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("end-to-end browser test: no Chromium at %s; install it with `apt-get install chromium` (Debian/Ubuntu)", chromiumPath)
	}
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "cartclass-e2e-chromium-")
		if err != nil {
			shared.err = err
			return
		}
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(chromiumPath),
			chromedp.UserDataDir(dir),
			chromedp.NoSandbox, // root in CI containers
			chromedp.DisableGPU,
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("hide-scrollbars", true), // screenshots look the same everywhere
			chromedp.Flag("mute-audio", true),
			chromedp.WindowSize(1280, 800),
		)
		actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, bcancel := chromedp.NewContext(actx)
		shared.cancel = func() { bcancel(); acancel(); os.RemoveAll(dir) }
		if err := chromedp.Do(bctx); err != nil {
			shared.err = fmt.Errorf("start %s: %w", chromiumPath, err)
			return
		}
		shared.ctx = bctx
	})
	if shared.err != nil {
		t.Fatalf("browser: %v", shared.err)
	}
	return shared.ctx
}

// app is one running cartclass with its dev identity provider and Graph emulator.
type app struct {
	URL      string // cartclass, e.g. http://127.0.0.1:41234 (no trailing slash)
	IdP      string // the dev identity provider's issuer
	Emulator string // the Graph emulator's root (control endpoints under /_emulator/)
	DB       string

	shutdown func() error // stops run() and waits for it, once (see stop)
}

// stop shuts cartclass down now, as SIGTERM does, and waits until run() has returned, for
// tests that look at the database afterwards or start cartclass on it again. The test's
// cleanup then has nothing left to stop.
func (a *app) stop(t *testing.T) {
	t.Helper()
	if err := a.shutdown(); err != nil {
		t.Fatal(err)
	}
}

// startApp runs cartclass as `cartclass -dev` does, on a fresh database in a temporary
// directory; seed, when given, fills the database first. It stops when the test ends.
func startApp(t *testing.T, seed func(*store.Store)) *app {
	t.Helper()
	browser(t) // skip before starting anything when there is no browser
	db := filepath.Join(t.TempDir(), "cartclass.db")
	if seed != nil {
		st, err := store.Open(context.Background(), db)
		if err != nil {
			t.Fatalf("open store to seed: %v", err)
		}
		seed(st)
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return startServer(t, db)
}

// startServer runs cartclass (see tryStartApp) on the database file db, which may exist,
// without a browser, with the settings in extra on top of the harness's; it stops when the
// test ends, or at app.stop.
func startServer(t *testing.T, db string, extra ...map[string]string) *app {
	t.Helper()
	// The public URL carries the port, so it has to be known before run() starts: pick a
	// free one, and pick again if another process takes it in between.
	var lastErr error
	for range 3 {
		a, err := tryStartApp(t, db, extra...)
		if err == nil {
			return a
		}
		lastErr = err
	}
	t.Fatalf("start cartclass: %v", lastErr)
	return nil
}

func tryStartApp(t *testing.T, db string, extra ...map[string]string) (*app, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	env := map[string]string{
		"CARTCLASS_ADDR":      addr,
		"CARTCLASS_DB":        db,
		"CARTCLASS_LOG_LEVEL": "error",
		"CARTCLASS_TIMEZONE":  "UTC",
		// Within the cleanup's 15 s wait, whatever a test leaves in flight.
		"CARTCLASS_SHUTDOWN_TIMEOUT": "5s",
	}
	for _, m := range extra {
		maps.Copy(env, m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		var environ []string
		for k, v := range env {
			environ = append(environ, k+"="+v)
		}
		err := run(ctx, environ, true, w)
		w.CloseWithError(io.EOF)
		done <- err
	}()

	a := &app{DB: db}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "dev identity provider at "):
				a.IdP = strings.TrimSuffix(strings.Fields(strings.TrimPrefix(line, "dev identity provider at "))[0], ":")
			case strings.HasPrefix(line, "dev Graph emulator at "):
				a.Emulator = strings.TrimSuffix(strings.Fields(strings.TrimPrefix(line, "dev Graph emulator at "))[0], emulator.BasePath)
			case strings.HasPrefix(line, "cartclass is running at "):
				a.URL = strings.TrimSuffix(strings.Fields(strings.TrimPrefix(line, "cartclass is running at "))[0], "/")
				close(ready)
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("run returned before serving: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		return nil, errors.New("cartclass did not start within 20 s")
	}
	if a.IdP == "" || a.Emulator == "" {
		cancel()
		return nil, fmt.Errorf("dev start-up lines missing: idp %q, emulator %q", a.IdP, a.Emulator)
	}
	a.shutdown = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("run: %v", err)
			}
			return nil
		case <-time.After(15 * time.Second):
			return errors.New("cartclass did not shut down within 15 s")
		}
	})
	t.Cleanup(func() {
		if err := a.shutdown(); err != nil {
			t.Error(err)
		}
	})
	return a, nil
}

// graphRequests is what the Graph emulator has received so far, oldest first.
func (a *app) graphRequests(t *testing.T) []emulator.Request {
	t.Helper()
	var reqs []emulator.Request
	a.emulatorGet(t, "/_emulator/requests", &reqs)
	return reqs
}

// graphWrites is the POST and PATCH requests the emulator received.
func (a *app) graphWrites(t *testing.T) []emulator.Request {
	t.Helper()
	var out []emulator.Request
	for _, r := range a.graphRequests(t) {
		if r.Method == http.MethodPost || r.Method == http.MethodPatch {
			out = append(out, r)
		}
	}
	return out
}

func (a *app) emulatorGet(t *testing.T, path string, v any) {
	t.Helper()
	res, err := http.Get(a.Emulator + path)
	if err != nil {
		t.Fatalf("emulator: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("emulator GET %s: %s", path, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatalf("emulator GET %s: %v", path, err)
	}
}

// tab is one browser tab in a browser context of its own, watching its console.
type tab struct {
	t   *testing.T
	ctx context.Context
	app *app

	mu       sync.Mutex
	messages []consoleEntry
	arrived  chan struct{} // signalled (without blocking) when a console entry arrives
	statuses []int         // HTTP error statuses the test expects the browser to report
}

// consoleEntry is one thing the browser reported on the console.
type consoleEntry struct {
	level  string // "error", "warning", "info", …, or "exception"
	source string // for browser log entries: "network", "security", "javascript", …
	text   string
	url    string
}

func (e consoleEntry) String() string {
	s := e.level
	if e.source != "" {
		s += " (" + e.source + ")"
	}
	s += ": " + e.text
	if e.url != "" {
		s += " at " + e.url
	}
	return s
}

// newTab opens a tab in a fresh browser context at 1280×800. When the test ends, the test
// fails if the page reported any error on the console.
func newTab(t *testing.T, a *app) *tab {
	t.Helper()
	bctx := browser(t)
	tb := &tab{t: t, app: a, arrived: make(chan struct{}, 1)}
	ctx, cancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext(), chromedp.WithListener(tb.listen))
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("open tab: %v", err)
	}
	tb.ctx = ctx
	t.Cleanup(tb.checkConsole) // runs before cancel: cleanups run last-in first-out
	return tb
}

// listen runs in the tab's event loop: it only records.
func (tb *tab) listen(ev any) {
	var e consoleEntry
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		var parts []string
		for _, a := range ev.Args {
			if len(a.Value) > 0 {
				var s string
				if json.Unmarshal(a.Value, &s) == nil {
					parts = append(parts, s)
					continue
				}
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		e = consoleEntry{level: string(ev.Type), text: strings.Join(parts, " ")}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		e = consoleEntry{level: "exception", text: text, url: d.URL}
	case *log.EventEntryAdded:
		e = consoleEntry{level: string(ev.Entry.Level), source: string(ev.Entry.Source), text: ev.Entry.Text, url: ev.Entry.URL}
	default:
		return
	}
	tb.mu.Lock()
	tb.messages = append(tb.messages, e)
	tb.mu.Unlock()
	select {
	case tb.arrived <- struct{}{}:
	default:
	}
}

// expectStatus declares that cartclass answers some request of this test with an HTTP
// error status by design (422 for a form with errors, 409 for a conflict, 403 for a refused
// request): Chromium reports each such answer on the console as a failed load, which would
// otherwise fail the test.
func (tb *tab) expectStatus(status int) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.statuses = append(tb.statuses, status)
}

// failing reports whether a console entry fails the test: exceptions, errors (which
// include CSP violations and failed loads) and failed console.assert calls, except the
// failed loads of the statuses the test expects from cartclass.
func (tb *tab) failing(e consoleEntry) bool {
	switch e.level {
	case "exception", "error", "assert":
	default:
		return false
	}
	if e.source == "network" && strings.HasPrefix(e.url, tb.app.URL+"/") {
		for _, st := range tb.statuses {
			if strings.Contains(e.text, fmt.Sprintf("the server responded with a status of %d ", st)) {
				return false
			}
		}
	}
	return true
}

// takeFailures returns the console entries so far that would fail the test, and forgets
// them (for tests of the console check itself).
func (tb *tab) takeFailures() []consoleEntry {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	var failures, rest []consoleEntry
	for _, m := range tb.messages {
		if tb.failing(m) {
			failures = append(failures, m)
		} else {
			rest = append(rest, m)
		}
	}
	tb.messages = rest
	return failures
}

func (tb *tab) checkConsole() {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, m := range tb.messages {
		if tb.failing(m) {
			tb.t.Errorf("browser console: %s", m)
		} else {
			tb.t.Logf("browser console: %s", m)
		}
	}
}

// do runs steps with the step timeout.
func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.t.Fatalf("browser: %v (at %s)", err, tb.location())
	}
}

// location is the tab's current URL, for messages.
func (tb *tab) location() string {
	ctx, cancel := context.WithTimeout(tb.ctx, time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "unknown location"
	}
	return loc
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("evaluate %q: %v", expr, err)
	}
	return v
}

// text waits for an element matching the CSS selector to be visible and returns its text,
// with runs of white space as one space.
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		tb.t.Fatalf("text of %s: %v (at %s)", sel, err, tb.location())
	}
	return strings.Join(strings.Fields(s), " ")
}

// count is how many elements match the CSS selector right now.
func (tb *tab) count(sel string) int {
	tb.t.Helper()
	return eval[int](tb, fmt.Sprintf("document.querySelectorAll(%q).length", sel))
}

// waitFor waits until the JavaScript condition holds in the page. Unlike an in-page poll
// it survives navigations: the condition is checked again in each new document.
func (tb *tab) waitFor(cond string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	var lastErr error
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		if err == nil && ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			tb.t.Fatalf("timed out waiting for %s at %s (last error: %v)", cond, tb.location(), lastErr)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// waitPath waits until the tab is at path (and query, if path has one) on cartclass.
func (tb *tab) waitPath(path string) {
	tb.t.Helper()
	tb.waitFor(fmt.Sprintf("location.origin === %q && location.pathname + location.search === %q && document.readyState !== 'loading'", tb.app.URL, path))
}

// waitGraphWrites waits until the emulator has received at least n POSTs and PATCHes,
// asking it every 20 ms (it has no way to notify).
func (a *app) waitGraphWrites(t *testing.T, n int) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(stepTimeout)
	for len(a.graphWrites(t)) < n {
		select {
		case <-tick.C:
		case <-timeout:
			t.Fatalf("Graph received %d writes within %s; want %d", len(a.graphWrites(t)), stepTimeout, n)
		}
	}
}

// waitConsole waits until cond, checked each time a console entry arrives, holds.
func (tb *tab) waitConsole(cond func() bool, what string) {
	tb.t.Helper()
	timeout := time.After(stepTimeout)
	for !cond() {
		select {
		case <-tb.arrived:
		case <-timeout:
			tb.t.Fatalf("timed out waiting for %s", what)
		}
	}
}
