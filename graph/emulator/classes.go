package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/cartclass/cartclass/graph"
	"github.com/google/uuid"
)

// classesPath is the education classes collection under BasePath.
const classesPath = "/education/classes"

// The term every class is served with: one school year, as a MIS syncs it.
const (
	termName  = "2026–27"
	termStart = "2026-09-01"
	termEnd   = "2027-07-20"
)

// DefaultClasses is the class list a new emulator serves: a deterministic,
// realistic timetable of a UK secondary school, 310 classes. Years 7–11 have
// forms A–E and the sixth form (years 12–13) forms A–C, each form taking ten
// subjects; a class looks like {DisplayName "7B Science", ClassCode "SCI-7B",
// ExternalID "MIS-2026-SCI-7B"}. Ids are name-based GUIDs (SHA-1 over the
// class code), so they are the same on every start and every machine, and a
// dev database that remembers them stays valid across restarts.
func DefaultClasses() []graph.Class {
	subjects := []struct{ name, code string }{
		{"Science", "SCI"}, {"Maths", "MAT"}, {"English", "ENG"}, {"History", "HIS"}, {"Geography", "GEO"},
		{"Art", "ART"}, {"Music", "MUS"}, {"Drama", "DRA"}, {"Computing", "CMP"}, {"French", "FRE"},
	}
	var out []graph.Class
	for year := 7; year <= 13; year++ {
		forms := "ABCDE"
		if year >= 12 {
			forms = "ABC"
		}
		for _, f := range forms {
			form := strconv.Itoa(year) + string(f)
			for _, s := range subjects {
				code := s.code + "-" + form
				out = append(out, graph.Class{
					ID:          classID(code),
					DisplayName: form + " " + s.name,
					ClassCode:   code,
					ExternalID:  "MIS-2026-" + code,
				})
			}
		}
	}
	return out
}

// classID is the stable GUID of a default class.
func classID(code string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://cartclass.invalid/emulator/education/classes/"+code)).String()
}

// Classes returns the classes the emulator serves, in listing order.
func (e *Emulator) Classes() []graph.Class {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.classes)
}

// SetClasses replaces the classes served from now on; nil restores
// DefaultClasses (an empty, non-nil slice serves no classes). They are served
// exactly as given, so a test can hand out hostile names, duplicates or an
// empty id (which a client must skip); an empty displayName, classCode or
// externalId is served as null, as Graph does for unset properties. A listing
// under way goes on from its skiptoken's position in the new list. Like the
// other control methods it is not an API request.
func (e *Emulator) SetClasses(cs []graph.Class) {
	if cs == nil {
		cs = DefaultClasses()
	} else {
		cs = slices.Clone(cs)
	}
	e.mu.Lock()
	e.classes = cs
	e.mu.Unlock()
}

// SetClassesForbidden makes classes reads answer 403
// Authorization_RequestDenied, as Graph does when the token lacks an
// EduRoster permission (true), or serves them again (false). Reset ends it.
func (e *Emulator) SetClassesForbidden(forbidden bool) {
	e.mu.Lock()
	e.classesForbidden = forbidden
	e.mu.Unlock()
}

// isClasses reports whether the request is for the classes collection
// (case-insensitively, like Graph).
func (x *exchange) isClasses() bool {
	return strings.EqualFold(strings.TrimSuffix(x.r.URL.Path, "/"), BasePath+classesPath)
}

// classesDenied answers as Graph does to a classes read without permission.
func (x *exchange) classesDenied() {
	x.fail(http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
}

// classSelection is which optional properties a classes page carries; id is
// always served.
type classSelection struct {
	displayName, classCode, externalID, term bool
	names                                    []string // as requested, canonical spelling; nil without $select
}

// parseClassSelect reads $select. Without one (or with *) every property is
// served; a property the emulator does not know is a 400, as in Graph.
func parseClassSelect(v string) (classSelection, error) {
	all := classSelection{displayName: true, classCode: true, externalID: true, term: true}
	if strings.TrimSpace(v) == "" {
		return all, nil
	}
	var sel classSelection
	for _, n := range strings.Split(v, ",") {
		n = strings.TrimSpace(n)
		var name string
		switch strings.ToLower(n) {
		case "*":
			return all, nil
		case "id":
			name = "id"
		case "displayname":
			name, sel.displayName = "displayName", true
		case "classcode":
			name, sel.classCode = "classCode", true
		case "externalid":
			name, sel.externalID = "externalId", true
		case "term":
			name, sel.term = "term", true
		default:
			return classSelection{}, fmt.Errorf("Parsing OData Select and Expand failed: Could not find a property named '%s' on type 'microsoft.graph.educationClass'.", n)
		}
		if !slices.Contains(sel.names, name) {
			sel.names = append(sel.names, name)
		}
	}
	return sel, nil
}

// wireClass is a class as Graph serves it. A property left out by $select
// is absent; a selected but empty one is null (json.RawMessage "null").
type wireClass struct {
	ID          string          `json:"id"`
	DisplayName json.RawMessage `json:"displayName,omitempty"`
	ClassCode   json.RawMessage `json:"classCode,omitempty"`
	ExternalID  json.RawMessage `json:"externalId,omitempty"`
	Term        *wireTerm       `json:"term,omitempty"`
}

type wireTerm struct {
	DisplayName string `json:"displayName"`
	StartDate   string `json:"startDate"`
	EndDate     string `json:"endDate"`
}

func (sel classSelection) wire(c graph.Class) wireClass {
	w := wireClass{ID: c.ID}
	if sel.displayName {
		w.DisplayName = nullable(c.DisplayName)
	}
	if sel.classCode {
		w.ClassCode = nullable(c.ClassCode)
	}
	if sel.externalID {
		w.ExternalID = nullable(c.ExternalID)
	}
	if sel.term {
		w.Term = &wireTerm{DisplayName: termName, StartDate: termStart, EndDate: termEnd}
	}
	return w
}

// nullable is s as JSON, or null when s is empty.
func nullable(s string) json.RawMessage {
	if s == "" {
		return json.RawMessage("null")
	}
	b, _ := json.Marshal(s) // a string always marshals
	return b
}

// serveClasses serves one page of the classes, after authentication: read
// only, paged with the associations' page size (and WithEmptyPages), and
// honouring $select, which the nextLink carries on like Graph's. It ignores
// other query options. The skiptoken is "c<n>" (the classes from position n)
// or, with WithEmptyPages, "d<n>" (an empty page, then c<n>).
func (x *exchange) serveClasses() {
	if x.r.Method != http.MethodGet {
		x.w.header.Set("Allow", http.MethodGet)
		x.fail(http.StatusMethodNotAllowed, "MethodNotAllowed",
			fmt.Sprintf("The HTTP method '%s' is not allowed for this resource.", x.r.Method))
		return
	}
	e := x.e
	e.mu.Lock()
	forbidden, all, pageSize, emptyPages := e.classesForbidden, e.classes, e.pageSize, e.emptyPages
	e.mu.Unlock()
	if forbidden {
		x.classesDenied()
		return
	}
	q := x.r.URL.Query()
	sel, err := parseClassSelect(q.Get("$select"))
	if err != nil {
		x.fail(http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	from, emptyNext := 0, false
	if tok := q.Get("$skiptoken"); tok != "" {
		n, err := strconv.Atoi(tok[1:])
		if err != nil || (tok[0] != 'c' && tok[0] != 'd') || n < 0 {
			x.fail(http.StatusBadRequest, "BadRequest", "The $skiptoken is invalid.")
			return
		}
		from, emptyNext = n, tok[0] == 'd'
	}
	page := struct {
		Context  string      `json:"@odata.context"`
		NextLink string      `json:"@odata.nextLink,omitempty"`
		Value    []wireClass `json:"value"`
	}{Context: x.origin() + BasePath + "/$metadata#education/classes", Value: []wireClass{}}
	if sel.names != nil {
		page.Context += "(" + strings.Join(sel.names, ",") + ")"
	}
	if emptyNext {
		page.NextLink = x.classesNextLink("c" + strconv.Itoa(from))
		x.writeJSON(http.StatusOK, page)
		return
	}
	from = min(from, len(all))
	end := min(from+pageSize, len(all))
	for _, c := range all[from:end] {
		page.Value = append(page.Value, sel.wire(c))
	}
	if end < len(all) {
		kind := "c"
		if emptyPages {
			kind = "d"
		}
		page.NextLink = x.classesNextLink(kind + strconv.Itoa(end))
	}
	x.writeJSON(http.StatusOK, page)
}

// classesNextLink is the request's own URL with its query options kept as
// sent (so $select carries on) and the skiptoken replaced.
func (x *exchange) classesNextLink(token string) string {
	var keep []string
	for _, part := range strings.Split(x.r.URL.RawQuery, "&") {
		k, _, _ := strings.Cut(part, "=")
		if uk, err := url.QueryUnescape(k); part == "" || (err == nil && uk == "$skiptoken") {
			continue
		}
		keep = append(keep, part)
	}
	keep = append(keep, "$skiptoken="+url.QueryEscape(token))
	return x.origin() + x.r.URL.EscapedPath() + "?" + strings.Join(keep, "&")
}

// handleClassesSet serves POST /_emulator/classes: a JSON array of classes
// replaces the list; an empty body or null restores the defaults.
func (e *Emulator) handleClassesSet(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxControlBody))
	if err != nil {
		bad(w, err)
		return
	}
	if b := bytes.TrimSpace(body); len(b) == 0 || string(b) == "null" {
		e.SetClasses(nil)
		reply(w, http.StatusNoContent, nil)
		return
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var cs []graph.Class
	if err := dec.Decode(&cs); err != nil {
		bad(w, err)
		return
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		bad(w, errors.New("unexpected data after the JSON array"))
		return
	}
	e.SetClasses(cs) // [] decodes to an empty, non-nil slice: no classes
	reply(w, http.StatusNoContent, nil)
}

// handleClassesForbidden serves POST /_emulator/classes/forbidden.
func (e *Emulator) handleClassesForbidden(w http.ResponseWriter, r *http.Request) {
	var v struct {
		Forbidden *bool `json:"forbidden"`
	}
	if !decodeControl(w, r, &v) {
		return
	}
	if v.Forbidden == nil {
		bad(w, errors.New(`want {"forbidden":true} or {"forbidden":false}`))
		return
	}
	e.SetClassesForbidden(*v.Forbidden)
	reply(w, http.StatusNoContent, nil)
}
