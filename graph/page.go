package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"strings"
)

// Page is one page of a listing, as Graph sent it.
type Page struct {
	Objects []Association // the well-formed objects, in Graph's order
	Skipped []Skipped     // objects that could not be read, each with why
	Last    bool          // no @odata.nextLink: the listing is complete after this page
}

// Skipped is an object in a listing page that could not be read: not a JSON
// object, a property of the wrong type, or no id.
type Skipped struct {
	ID  string // the object's id, if one could be read
	Err error  // why the object was skipped
}

// Error describes the skipped object, so a Skipped can be wrapped or logged
// as an error.
func (s Skipped) Error() string {
	if s.ID != "" {
		return fmt.Sprintf("graph: object %q: %v", s.ID, s.Err)
	}
	return fmt.Sprintf("graph: object without readable id: %v", s.Err)
}

// Unwrap returns the reason.
func (s Skipped) Unwrap() error { return s.Err }

// Pages lists every object page by page. Each iteration yields one page as
// Graph sent it. The first request is made when iteration starts, and the
// next page is requested only after the loop body returns, so a caller can
// wait for its pacing gate at the end of the body; breaking out of the loop
// sends no further request.
//
// Pages follows @odata.nextLink as an opaque absolute URL until it is
// absent; pages may be empty. A nextLink must stay on the base URL's scheme
// and host (so the bearer token goes nowhere else), must not repeat a URL
// already requested, and a listing may have at most 10,000 pages. When one
// of these rules is broken, the page carrying the link is still yielded
// (its objects are as good as any), and the following iteration yields the
// error instead of sending the request.
//
// Any error ends the iteration: it is yielded once, as (Page{}, err). A
// body that is not a JSON object with a "value" array is an error (the
// listing failed), but a single malformed object inside "value" is only
// reported in Page.Skipped. Only a listing whose final page has Last set
// proves that an object absent from it is gone.
func (c *Client) Pages(ctx context.Context) iter.Seq2[Page, error] {
	return func(yield func(Page, error) bool) {
		for l, err := range listPages(ctx, c, "list", c.base+resourcePath, decodeObject) {
			if !yield(Page{Objects: l.items, Skipped: l.skipped, Last: l.last}, err) {
				return
			}
		}
	}
}

// listing is one page of any collection, before it is given its public type
// (Page, ClassPage).
type listing[T any] struct {
	items   []T
	skipped []Skipped
	last    bool
}

// listPages is the one pager behind every listing (Pages, ClassPages), so the
// rules Pages documents (opaque nextLink on the base URL's origin only, no
// repeated URL, at most maxPages pages, a request only when the caller asks
// for the next page, one error ending the iteration) hold for all of them
// alike. It starts at first; decode reads one object of "value" (see
// decodeItem); what names the listing in errors ("list" for Pages).
func listPages[T any](ctx context.Context, c *Client, what, first string, decode func(json.RawMessage) (T, string, error)) iter.Seq2[listing[T], error] {
	return func(yield func(listing[T], error) bool) {
		next := first
		seen := map[string]bool{}
		for pages := 0; ; pages++ {
			if pages >= maxPages {
				yield(listing[T]{}, fmt.Errorf("graph: %s: more than %d pages", what, maxPages))
				return
			}
			seen[next] = true
			res, err := c.do(ctx, http.MethodGet, next, nil)
			if err != nil {
				yield(listing[T]{}, err)
				return
			}
			page, link, err := decodePage(res, decode)
			if err != nil {
				yield(listing[T]{}, err)
				return
			}
			if page.last {
				yield(page, nil)
				return
			}
			// Check the link before handing out the page, but report a bad
			// one only when it would be followed.
			next, err = c.nextURL(what, res, link, seen)
			if !yield(page, nil) {
				return
			}
			if err != nil {
				yield(listing[T]{}, err)
				return
			}
		}
	}
}

// nextURL resolves a nextLink against the request it came with and checks
// that it stays on the base URL's origin and has not been requested before.
func (c *Client) nextURL(what string, res *result, link string, seen map[string]bool) (string, error) {
	nu, err := res.req.Parse(link)
	if err != nil {
		return "", fmt.Errorf("graph: %s: bad @odata.nextLink: %w", what, err)
	}
	if origin(nu) != origin(c.baseURL) {
		return "", fmt.Errorf("graph: %s: @odata.nextLink leaves %s://%s", what, c.baseURL.Scheme, c.baseURL.Host)
	}
	next := nu.String()
	if seen[next] {
		return "", fmt.Errorf("graph: %s: @odata.nextLink repeats", what)
	}
	return next, nil
}

// decodePage reads a listing page: the envelope strictly, each object on its
// own with decode, so one malformed object costs only itself.
func decodePage[T any](res *result, decode func(json.RawMessage) (T, string, error)) (listing[T], string, error) {
	var env struct {
		Value    json.RawMessage `json:"value"`
		NextLink string          `json:"@odata.nextLink"`
	}
	if err := res.decode(&env); err != nil {
		return listing[T]{}, "", err
	}
	var raw []json.RawMessage
	if v := bytes.TrimSpace(env.Value); len(v) == 0 || v[0] != '[' {
		return listing[T]{}, "", res.fail(errors.New(`decode response: no "value" array`))
	} else if err := json.Unmarshal(v, &raw); err != nil {
		return listing[T]{}, "", res.fail(fmt.Errorf("decode response: %w", err))
	}
	page := listing[T]{items: make([]T, 0, len(raw)), last: env.NextLink == ""}
	for _, r := range raw {
		item, id, err := decode(r)
		if err != nil {
			page.skipped = append(page.skipped, Skipped{ID: id, Err: err})
			continue
		}
		page.items = append(page.items, item)
	}
	return page, env.NextLink, nil
}

// decodeObject decodes one listed association (see decodeItem).
func decodeObject(r json.RawMessage) (Association, string, error) {
	return decodeItem(r, func(a Association) string { return a.ID })
}

// decodeItem decodes one listed object of any kind: it must be a JSON
// object that decodes into T and has a non-blank id (idOf). On failure it
// returns the object's id when one could still be read, for Skipped.
func decodeItem[T any](r json.RawMessage, idOf func(T) string) (T, string, error) {
	var zero T
	if v := bytes.TrimSpace(r); len(v) == 0 || v[0] != '{' {
		return zero, "", fmt.Errorf("not a JSON object: %s", shorten(string(v), 40))
	}
	var item T
	if err := json.Unmarshal(r, &item); err != nil {
		var id struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(r, &id) // best effort: the id may itself be the problem
		return zero, id.ID, err
	}
	if strings.TrimSpace(idOf(item)) == "" {
		return zero, "", errors.New("object has no id")
	}
	return item, "", nil
}
