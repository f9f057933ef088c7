// Package views holds cartclass's templ components. Components are pure functions of their
// props: no I/O, no clock, no globals beyond the embedded asset paths. Each region that htmx
// swaps is its own exported component with a stable id.
package views

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cartclass/cartclass/static"
	"github.com/cartclass/cartclass/store"
)

// Page carries what every full page needs; web builds it in one place.
type Page struct {
	Title       string
	Nonce       string // CSP nonce for this response's script tags
	Flash       Flash
	Breadcrumbs []Crumb // the last one is the current page
	Nav         string  // active main-navigation entry, e.g. "associations"
	User        *User   // nil when signed out
	Banner      *Banner // shown to admins while pushing to Graph is paused
}

// Banner is a site-wide notice under the header.
type Banner struct {
	Kind    string // "warning", "danger" or "info"
	Message string
}

// User is the signed-in person as pages show them.
type User struct {
	Name    string
	Role    string // "Admin", "Viewer" or "No access"
	CanEdit bool
}

// canEdit reports whether the page's user may create and edit.
func (p Page) canEdit() bool { return p.User != nil && p.User.CanEdit }

// Flash is a one-time message shown after a redirect.
type Flash struct {
	Kind    string // "success", "info" or "error"; empty means no flash
	Message string
}

// Crumb is one breadcrumb link.
type Crumb struct {
	Label string
	URL   string // empty for the current page
}

// htmxConfig keeps htmx from evaluating code or script tags from responses, from talking to
// other origins, and from caching pages (a back navigation reloads from the server, which
// then applies its access checks). 422 and 409 answers are swapped so forms can show their
// messages; includeIndicatorStyles is off because an injected <style> would break the CSP.
const htmxConfig = `{"allowEval":false,"allowScriptTags":false,"historyCacheSize":0,` +
	`"refreshOnHistoryMiss":true,"selfRequestsOnly":true,"includeIndicatorStyles":false,` +
	`"responseHandling":[{"code":"204","swap":false},{"code":"[23]..","swap":true},` +
	`{"code":"422","swap":true},{"code":"409","swap":true},{"code":"[45]..","swap":false,"error":true}]}`

func asset(name string) string { return static.Path(name) }

// syncErrorText is Graph's error in plain words: status, code and the short message.
func syncErrorText(e *store.SyncError) string {
	out := ""
	if e.Status != 0 {
		out = strconv.Itoa(e.Status)
	}
	if e.Code != "" {
		out += " " + e.Code
	}
	if e.Message != "" {
		if out != "" {
			out += ": "
		}
		out += e.Message
	}
	return strings.TrimSpace(out)
}

func isoTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func itoa[T ~int | ~int32 | ~int64](n T) string { return strconv.FormatInt(int64(n), 10) }

// thousands renders a count for people, with thousands separators: 12,345.
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

// Ids of the elements that refresh themselves on a timer (hx-trigger "every …"): the
// detail page's sync state and the sync panel's figures. htmx names the triggering
// element in HX-Trigger, which is how the server tells these polls from the admin's own
// requests.
const (
	SyncStatusID = "sync-status"
	SyncStatsID  = "sync-stats"
	// EmptyStateID is the empty list page while Intune is being read.
	EmptyStateID = "empty-state"
)

// ListURL is the address of the association list with the given search, sort and page;
// default values are left out so URLs stay short and bookmarkable.
func ListURL(q, sort string, page int) string {
	v := url.Values{}
	if q != "" {
		v.Set("q", q)
	}
	if sort != "" && sort != "-modified" {
		v.Set("sort", sort)
	}
	if page > 1 {
		v.Set("page", strconv.Itoa(page))
	}
	if len(v) == 0 {
		return "/associations"
	}
	return "/associations?" + v.Encode()
}

// AssociationURL is the detail page of association id.
func AssociationURL(id int64) string { return "/associations/" + itoa(id) }
