package graph

import (
	"context"
	"encoding/json"
	"iter"
)

// classesPath is the education classes collection, relative to the base URL
// (the same /beta base as the associations; Graph serves it under v1.0 too).
const classesPath = "/education/classes"

// classesSelect is what the classes listing asks for: only what a pick-list
// shows and matches classroom ids against, which keeps pages small.
const classesSelect = "id,displayName,classCode,externalId"

// The least privileged Graph permissions that let the classes listing read
// classes, for telling an admin what to grant after a 403. With the delegated
// one, Graph may show a signed-in member only their own classes, so a listing
// can be partial without any error.
const (
	ClassesDelegatedPermission   = "EduRoster.ReadBasic"
	ClassesApplicationPermission = "EduRoster.Read.All"
)

// Class is an education class as the classes listing gives it. Only ID is
// sure to be set; the other properties are empty when Graph left them out or
// sent null. Nothing documents that cartToClassAssociation classroomIds are
// class ids, so classes are suggestions for classroomIds, never the only
// allowed values.
type Class struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName"`
	ClassCode   string `json:"classCode"`
	ExternalID  string `json:"externalId"`
}

// ClassPage is one page of the classes listing, as Graph sent it.
type ClassPage struct {
	Classes []Class   // the well-formed classes, in Graph's order
	Skipped []Skipped // objects that could not be read, each with why
	Last    bool      // no @odata.nextLink: the listing is complete after this page
}

// ClassPages lists the school's education classes page by page, from
// <base>/education/classes with $select=id,displayName,classCode,externalId.
// It follows exactly the paging rules of Pages: each iteration yields one page
// as Graph sent it; the first request is made when iteration starts and the
// next only after the loop body returns (breaking out sends nothing more);
// nextLinks are opaque absolute URLs that must stay on the base URL's origin,
// must not repeat, and at most 10,000 pages are read; any error is yielded
// once, as (ClassPage{}, err), and ends the iteration.
//
// A body that is not a JSON object with a "value" array is an error; a single
// class that is not a JSON object, has a property of the wrong type or has no
// string id is only reported in ClassPage.Skipped. displayName, classCode and
// externalId may be absent or null (then empty).
//
// Without permission to read classes Graph answers 403, which is yielded as an
// *APIError with Status 403 (Graph's code is typically
// "Authorization_RequestDenied"): the caller can turn the pick-list off and
// name ClassesDelegatedPermission or ClassesApplicationPermission.
func (c *Client) ClassPages(ctx context.Context) iter.Seq2[ClassPage, error] {
	return func(yield func(ClassPage, error) bool) {
		first := c.base + classesPath + "?$select=" + classesSelect
		for l, err := range listPages(ctx, c, "list classes", first, decodeClass) {
			if !yield(ClassPage{Classes: l.items, Skipped: l.skipped, Last: l.last}, err) {
				return
			}
		}
	}
}

// decodeClass decodes one listed class (see decodeItem).
func decodeClass(r json.RawMessage) (Class, string, error) {
	return decodeItem(r, func(cl Class) string { return cl.ID })
}
