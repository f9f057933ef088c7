package main

// Accessibility checks run from the browser: axe-core for WCAG 2.x A/AA rules (labels,
// contrast, ARIA), and keyboard walks that press Tab the way a person does and check that
// focus lands where it should and can be seen.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// axeVersion is the vendored axe-core in testdata/axe (see its README).
const axeVersion = "4.14.1"

var axeSource = sync.OnceValues(func() (string, error) {
	b, err := os.ReadFile("testdata/axe/axe.min.js")
	return string(b), err
})

// axeViolation is one failed axe rule with the elements that fail it.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// checkA11y fails the test for every accessibility problem a11yProblems finds on the page
// as it is now.
func (tb *tab) checkA11y(what string) {
	tb.t.Helper()
	for _, p := range tb.a11yProblems() {
		tb.t.Errorf("accessibility (%s): %s", what, p)
	}
}

// a11yProblems runs axe-core's WCAG 2.0–2.2 A and AA rules (contrast, labels, ARIA, …) and
// a check that every form control has a label of its own. axe is injected through the
// DevTools protocol (Runtime.evaluate), which the page's CSP does not govern, so the CSP
// stays as strict as users get it.
func (tb *tab) a11yProblems() []string {
	tb.t.Helper()
	src, err := axeSource()
	if err != nil {
		tb.t.Fatalf("axe-core: %v", err)
	}
	if !eval[bool](tb, "typeof window.axe === 'object'") {
		tb.do(chromedp.Evaluate[chromedp.Void](src))
		if v := eval[string](tb, "axe.version"); v != axeVersion {
			tb.t.Fatalf("axe-core version %s, want %s", v, axeVersion)
		}
	}
	const run = `axe.run(document, {
		runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']},
		resultTypes: ['violations'],
	}).then(r => JSON.stringify(r.violations.map(v => ({
		id: v.id, impact: v.impact, help: v.help,
		nodes: v.nodes.map(n => n.target.join(' ') + ' — ' + (n.failureSummary || '').replace(/\s+/g, ' ')),
	}))))`
	raw := evalAwait[string](tb, run)
	var violations []axeViolation
	if err := json.Unmarshal([]byte(raw), &violations); err != nil {
		tb.t.Fatalf("axe result: %v", err)
	}
	var problems []string
	for _, v := range violations {
		problems = append(problems, fmt.Sprintf("%s [%s, %s]\n\t%s", v.Help, v.ID, v.Impact, strings.Join(v.Nodes, "\n\t")))
	}
	// A placeholder or title is not a label.
	unlabelled := eval[[]string](tb, `Array.from(document.querySelectorAll('input, select, textarea'))
		.filter(e => e.type !== 'hidden' && e.getClientRects().length > 0)
		.filter(e => !e.labels || e.labels.length === 0 || Array.from(e.labels).every(l => l.textContent.trim() === ''))
		.map(e => e.outerHTML.slice(0, 120))`)
	for _, u := range unlabelled {
		problems = append(problems, "form control without a label: "+u)
	}
	return problems
}

// focusedJS describes the focused element the way the tests name elements: #id,
// [data-testid=…], or the tag and its text.
const focusedJS = `(() => {
	const e = document.activeElement;
	if (!e || e === document.body) return 'body';
	if (e.id) return '#' + e.id;
	if (e.dataset.testid) return '[data-testid=' + e.dataset.testid + ']';
	return e.tagName.toLowerCase() + ' "' + e.textContent.trim().replace(/\s+/g, ' ').slice(0, 40) + '"';
})()`

// focused is focusedJS's description of the focused element.
func (tb *tab) focused() string {
	tb.t.Helper()
	return eval[string](tb, focusedJS)
}

// focusVisibleJS returns "" when the focused element shows a focus indicator a sighted
// keyboard user can see (an outline of at least 2px, or a box shadow), else what is wrong.
const focusVisibleJS = `(() => {
	const e = document.activeElement;
	if (!e || e === document.body) return 'nothing has focus';
	const r = e.getBoundingClientRect();
	if (r.width === 0 || r.height === 0) return 'the focused element is not visible';
	const s = getComputedStyle(e);
	const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;
	if (!outline && s.boxShadow === 'none') return 'no visible focus indicator';
	return '';
})()`

// press sends keys to whatever has focus, as typing on a keyboard does ("\t" is Tab, "\r"
// or "\n" is Enter, "\b" is Backspace).
//
// Each key is a keyDown carrying the key's text and a keyUp, as a real keyboard reaches
// Blink (and as Puppeteer types). chromedp.KeyEvent sends the text as a separate char
// event instead, which Blink does not suppress when the keyDown was handled: Enter on a
// link that moves focus into a text field then also submits that field's form.
func (tb *tab) press(keys string, mods ...chromedp.Modifier) {
	tb.t.Helper()
	var modifiers int64
	for _, m := range mods {
		modifiers |= int64(m)
	}
	tb.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, r := range keys {
			var down, up input.DispatchKeyEventParams
			for _, e := range kb.Encode(r) {
				switch e.Type {
				case input.DispatchKeyEventTypeKeyDown:
					down = *e
				case input.DispatchKeyEventTypeKeyUp:
					up = *e
				case input.DispatchKeyEventTypeChar:
					down.Text, down.UnmodifiedText = e.Text, e.UnmodifiedText
				}
			}
			down.Modifiers |= modifiers
			up.Modifiers |= modifiers
			if modifiers&^int64(chromedp.ModifierShift) != 0 {
				down.Text, down.UnmodifiedText = "", "" // a shortcut such as Ctrl+A types nothing
			}
			if down.Text == "" {
				down.Type = input.DispatchKeyEventTypeRawKeyDown
			}
			for _, e := range []input.DispatchKeyEventParams{down, up} {
				if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, e); err != nil {
					return err
				}
			}
		}
		return nil
	}))
}

// tabTo presses Tab until the element described by want (in focusedJS's terms) has focus,
// checking at every stop that focus is visible. It fails after max stops, listing them.
func (tb *tab) tabTo(want string, max int) {
	tb.t.Helper()
	var stops []string
	for range max {
		tb.press("\t")
		got := tb.focused()
		stops = append(stops, got)
		if problem := eval[string](tb, focusVisibleJS); problem != "" {
			tb.t.Errorf("keyboard: focus on %s: %s", got, problem)
		}
		if got == want {
			return
		}
	}
	tb.t.Fatalf("keyboard: %s not reached in %d Tab presses; focus went %s", want, max, strings.Join(stops, " → "))
}

// selectAllAndType replaces the focused field's text as a keyboard user does: Ctrl+A,
// then typing.
func (tb *tab) selectAllAndType(text string) {
	tb.t.Helper()
	tb.press("a", chromedp.ModifierCtrl)
	if text == "" {
		tb.press("\b")
		return
	}
	tb.press(text)
}

// evalAwait evaluates an expression that returns a promise and waits for its value.
func evalAwait[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("evaluate: %v", fmt.Errorf("%.80s…: %w", expr, err))
	}
	return v
}
