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
		next := c.base + resourcePath
		seen := map[string]bool{}
		for pages := 0; ; pages++ {
			if pages >= maxPages {
				yield(Page{}, fmt.Errorf("graph: list: more than %d pages", maxPages))
				return
			}
			seen[next] = true
			res, err := c.do(ctx, http.MethodGet, next, nil)
			if err != nil {
				yield(Page{}, err)
				return
			}
			page, link, err := decodePage(res)
			if err != nil {
				yield(Page{}, err)
				return
			}
			if page.Last {
				yield(page, nil)
				return
			}
			// Check the link before handing out the page, but report a bad
			// one only when it would be followed.
			next, err = c.nextURL(res, link, seen)
			if !yield(page, nil) {
				return
			}
			if err != nil {
				yield(Page{}, err)
				return
			}
		}
	}
}

// nextURL resolves a nextLink against the request it came with and checks
// that it stays on the base URL's origin and has not been requested before.
func (c *Client) nextURL(res *result, link string, seen map[string]bool) (string, error) {
	nu, err := res.req.Parse(link)
	if err != nil {
		return "", fmt.Errorf("graph: list: bad @odata.nextLink: %w", err)
	}
	if origin(nu) != origin(c.baseURL) {
		return "", fmt.Errorf("graph: list: @odata.nextLink leaves %s://%s", c.baseURL.Scheme, c.baseURL.Host)
	}
	next := nu.String()
	if seen[next] {
		return "", errors.New("graph: list: @odata.nextLink repeats")
	}
	return next, nil
}

// decodePage reads a listing page: the envelope strictly, each object on its
// own, so one malformed object costs only itself.
func decodePage(res *result) (Page, string, error) {
	var env struct {
		Value    json.RawMessage `json:"value"`
		NextLink string          `json:"@odata.nextLink"`
	}
	if err := res.decode(&env); err != nil {
		return Page{}, "", err
	}
	var raw []json.RawMessage
	if v := bytes.TrimSpace(env.Value); len(v) == 0 || v[0] != '[' {
		return Page{}, "", res.fail(errors.New(`decode response: no "value" array`))
	} else if err := json.Unmarshal(v, &raw); err != nil {
		return Page{}, "", res.fail(fmt.Errorf("decode response: %w", err))
	}
	page := Page{Objects: make([]Association, 0, len(raw)), Last: env.NextLink == ""}
	for _, r := range raw {
		a, err := decodeObject(r)
		if err != nil {
			page.Skipped = append(page.Skipped, Skipped{ID: a.ID, Err: err})
			continue
		}
		page.Objects = append(page.Objects, a)
	}
	return page, env.NextLink, nil
}

// decodeObject decodes one listed object. On failure the returned
// Association carries only the id, when one could be read.
func decodeObject(r json.RawMessage) (Association, error) {
	if v := bytes.TrimSpace(r); len(v) == 0 || v[0] != '{' {
		return Association{}, fmt.Errorf("not a JSON object: %s", shorten(string(v), 40))
	}
	var a Association
	if err := json.Unmarshal(r, &a); err != nil {
		var id struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(r, &id) // best effort: the id may itself be the problem
		return Association{ID: id.ID}, err
	}
	if strings.TrimSpace(a.ID) == "" {
		return Association{}, errors.New("object has no id")
	}
	return a, nil
}
