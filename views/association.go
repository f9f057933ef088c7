package views

import (
	"strings"

	"github.com/cartclass/cartclass/store"
)

// Names of the association form's fields, shared by the views and the handlers that parse
// the form.
const (
	FieldDisplayName   = "displayName"
	FieldDescription   = "description"
	FieldVersion       = "version"
	FieldDeviceCartIDs = "deviceCartIds"
	FieldClassroomIDs  = "classroomIds"
	FieldRevision      = "revision"
	// BasePrefix names the hidden copies of the values an edit started from
	// ("base.displayName", …): a conflicting save re-applies only what the admin changed.
	BasePrefix = "base."
)

// AssociationList is the association list page's table: one page of search results.
type AssociationList struct {
	Query   string
	Sort    string
	Page    int
	PerPage int
	Total   int
	// TotalCapped means Total is a lower bound: counting stopped there ("1,000+"), so no
	// request walks every row of a large table.
	TotalCapped bool
	Items       []store.Association
	// NotSynced limits the list to associations Graph does not hold yet.
	NotSynced bool
	// Deleted lists the associations deleted in cartclass in the last 30 days instead.
	Deleted bool
	// Intune is what the empty page says about reading Intune; nil without Graph.
	Intune *IntuneReading
}

// The values of the list's state filter (the "state" query parameter).
const (
	StateNotSynced = "notsynced"
	StateDeleted   = "deleted"
)

// IntuneReading is how far reading Intune has got, for the empty list: it must not say
// there is nothing while Intune may hold associations cartclass has not read yet.
type IntuneReading struct {
	Running   bool // a read is under way
	SoFar     int  // objects read so far by the running read
	FoundNone bool // the last read was complete and Intune held no associations
}

// state is the list's filter as the "state" query parameter spells it ("" for all).
func (l AssociationList) state() string {
	switch {
	case l.Deleted:
		return StateDeleted
	case l.NotSynced:
		return StateNotSynced
	}
	return ""
}

// URL is this list's canonical address: the list endpoint sends it as HX-Push-Url, so the
// address bar shows /associations?q=x rather than the raw form (q=x&state=&sort=-modified).
func (l AssociationList) URL() string { return l.url(l.Sort, l.Page) }

// url is this list's address with another sort and page, keeping search and filter.
func (l AssociationList) url(sort string, page int) string {
	u := ListURL(l.Query, sort, page)
	state := l.state()
	if state == "" {
		return u
	}
	if strings.Contains(u, "?") {
		return u + "&state=" + state
	}
	return u + "?state=" + state
}

// Empty reports whether there is nothing to list at all (not merely no search results):
// the page then shows the empty state instead of the toolbar and table.
func (l AssociationList) Empty() bool { return l.Total == 0 && l.Query == "" && l.state() == "" }

// Pages is the number of pages of results (at least 1). When the count was capped it is a
// lower bound that includes the page after the counted ones.
func (l AssociationList) Pages() int {
	total := l.Total
	if l.TotalCapped {
		total++
	}
	if l.PerPage < 1 || total == 0 {
		return 1
	}
	return (total + l.PerPage - 1) / l.PerPage
}

// totalText is the number of matches for people: "1,234", or "1,000+" when capped.
func (l AssociationList) totalText() string {
	if l.TotalCapped {
		return thousands(l.Total) + "+"
	}
	return thousands(l.Total)
}

// pagesText is the number of pages for the pager: "21", or "21+" when the count was capped.
func (l AssociationList) pagesText() string {
	if l.TotalCapped {
		return thousands(l.Pages()) + "+"
	}
	return thousands(l.Pages())
}

func (l AssociationList) first() int { return (l.Page-1)*l.PerPage + 1 }
func (l AssociationList) last() int  { return l.first() + len(l.Items) - 1 }

// sortLink is where a column header points: the column's ascending order, or its reverse
// when it is the current order.
func (l AssociationList) sortLink(column string) string {
	next := column
	if l.Sort == column {
		next = "-" + column
	}
	return l.url(next, 1)
}

// ariaSort is the aria-sort value of a column header.
func (l AssociationList) ariaSort(column string) string {
	switch l.Sort {
	case column:
		return "ascending"
	case "-" + column:
		return "descending"
	}
	return "none"
}

// AssociationValues are the form's values as typed, kept verbatim so a re-rendered form
// never loses input.
type AssociationValues struct {
	DisplayName   string
	Description   string
	Version       string
	DeviceCartIDs string
	ClassroomIDs  string
}

// Get returns the value of the field called name ("" for an unknown name).
func (v AssociationValues) Get(name string) string {
	if p := v.field(name); p != nil {
		return *p
	}
	return ""
}

// Set sets the field called name; an unknown name is ignored.
func (v *AssociationValues) Set(name, value string) {
	if p := v.field(name); p != nil {
		*p = value
	}
}

func (v *AssociationValues) field(name string) *string {
	switch name {
	case FieldDisplayName:
		return &v.DisplayName
	case FieldDescription:
		return &v.Description
	case FieldVersion:
		return &v.Version
	case FieldDeviceCartIDs:
		return &v.DeviceCartIDs
	case FieldClassroomIDs:
		return &v.ClassroomIDs
	}
	return nil
}

// FieldNames are the form's fields, in form order.
func FieldNames() []string {
	names := make([]string, len(fieldOrder))
	for i, f := range fieldOrder {
		names[i] = f.Name
	}
	return names
}

// Differing names the fields whose values differ between a and b.
func Differing(a, b AssociationValues) map[string]bool {
	d := map[string]bool{}
	for _, f := range fieldOrder {
		if a.Get(f.Name) != b.Get(f.Name) {
			d[f.Name] = true
		}
	}
	return d
}

// AssociationForm is the create or edit form.
type AssociationForm struct {
	// ClassesOn offers the class finder under Classroom IDs (class names are read).
	ClassesOn bool
	ID        int64 // 0 for a new association
	Revision  int64 // the revision the form was loaded from
	Values    AssociationValues
	Errors    map[string]string // field name → message
	// Base is what the edit started from (revision Revision), sent back in hidden fields;
	// nil for a new association.
	Base *AssociationValues
}

// baseFields are the hidden inputs carrying f.Base, in form order.
func (f AssociationForm) baseFields() [][2]string {
	if f.Base == nil {
		return nil
	}
	var out [][2]string
	for _, fld := range fieldOrder {
		out = append(out, [2]string{BasePrefix + fld.Name, f.Base.Get(fld.Name)})
	}
	return out
}

func (f AssociationForm) action() string {
	if f.ID == 0 {
		return "/associations"
	}
	return AssociationURL(f.ID)
}

// draftKey names the browser-side draft of this form: per association and revision, so a
// draft never lands on a newer version than the one it was typed over.
func (f AssociationForm) draftKey() string {
	if f.ID == 0 {
		return "cartclass-draft:new"
	}
	return "cartclass-draft:" + itoa(f.ID) + "@" + itoa(f.Revision)
}

func (f AssociationForm) cancelURL() string {
	if f.ID == 0 {
		return "/associations"
	}
	return AssociationURL(f.ID)
}

// fieldOrder is the order of fields in the form and its error summary.
var fieldOrder = []struct{ Name, Label string }{
	{FieldDisplayName, "Display name"},
	{FieldDescription, "Description"},
	{FieldVersion, "Version"},
	{FieldDeviceCartIDs, "Device cart IDs"},
	{FieldClassroomIDs, "Classroom IDs"},
}

// Conflict is what the 409 page shows: the admin's change next to what is stored now.
type Conflict struct {
	Mine    store.Fields // the admin's change, normalised
	Current store.Association
	Form    AssociationForm // the admin's changes on top of the current revision
	// Rebased tells the form holds only the admin's changes on top of the current version
	// (the edit's starting values were known); otherwise it holds all of their values.
	Rebased bool
	// Both names the fields both admins changed, to different values: the form holds
	// this admin's value there.
	Both map[string]bool
}

// ValuesOf turns stored fields into form values (one id per line).
func ValuesOf(f store.Fields) AssociationValues {
	return AssociationValues{
		DisplayName:   f.DisplayName,
		Description:   f.Description,
		Version:       itoa(f.Version),
		DeviceCartIDs: strings.Join(f.DeviceCartIDs, "\n"),
		ClassroomIDs:  strings.Join(f.ClassroomIDs, "\n"),
	}
}
