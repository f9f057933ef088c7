package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"golang.org/x/oauth2"
)

// resourcePath is the collection, relative to the base URL.
const resourcePath = "/deviceManagement/cartToClassAssociations"

// maxBody caps how much of any response body is read.
const maxBody = 4 << 20

// maxPages bounds a listing, in case a server keeps handing out nextLinks.
const maxPages = 10000

// ErrNoTokenSource is returned when a request is attempted on a Client that
// has no token source (see WithTokenSource). Nothing was sent.
var ErrNoTokenSource = errors.New("graph: no token source")

// Client talks to the cartToClassAssociations resource. It is safe for
// concurrent use and immutable after New.
type Client struct {
	base    string   // base URL without trailing slash, e.g. https://graph.microsoft.com/beta
	baseURL *url.URL // base, parsed
	hc      *http.Client
	ts      oauth2.TokenSource
	observe func(RequestInfo) // nil: nobody is told
}

// RequestInfo is one request the Client made, as an observer learns of it (see
// WithObserver). It never holds a token or a body.
type RequestInfo struct {
	Method string
	Path   string // URL path, no query
	// Start is when the request was handed to the HTTP client; Duration runs from then
	// until the answer was read (or the exchange failed).
	Start    time.Time
	Duration time.Duration
	// Status is the HTTP status answered; 0 when no answer came back.
	Status int
	// RequestID is Graph's request-id (from the error body's innerError, else the
	// response header); empty without an answer.
	RequestID string
	// ClientRequestID is the client-request-id the request was sent with.
	ClientRequestID string
	// Code is Graph's error code when it answered with an error (e.g.
	// "ServiceUnavailable"); empty otherwise.
	Code string
	// Err is what the request failed with (an *APIError or *TransportError); nil when
	// Graph answered success and the body was read. A success body that then fails to
	// decode is the caller's error, not reported here.
	Err error
}

// Option configures a Client in New.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (timeouts, transport). The default has
// a 100 s overall timeout, like Microsoft's SDKs.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// WithTokenSource sets the source of bearer tokens (app-only mode, or a
// default for delegated mode).
func WithTokenSource(ts oauth2.TokenSource) Option {
	return func(c *Client) { c.ts = ts }
}

// WithObserver sets f to be told of every request the Client makes, once each, after its
// answer was read or the exchange failed (see Client.WithObserver).
func WithObserver(f func(RequestInfo)) Option {
	return func(c *Client) { c.observe = f }
}

// New returns a Client for the Graph endpoint at baseURL, e.g.
// "https://graph.microsoft.com/beta" (or an emulator's URL + "/beta").
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("graph: bad base URL: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("graph: base URL must be an absolute http(s) URL without query, got %q", baseURL)
	}
	c := &Client{
		base:    strings.TrimRight(baseURL, "/"),
		baseURL: u,
		hc:      &http.Client{Timeout: 100 * time.Second},
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// WithTokenSource returns a copy of c that authenticates with ts, for
// delegated mode (each admin's own token). c is unchanged; the copy shares
// the HTTP client and the observer.
func (c *Client) WithTokenSource(ts oauth2.TokenSource) *Client {
	cp := *c
	cp.ts = ts
	return &cp
}

// WithObserver returns a copy of c that tells f of every request it makes (nil: nobody),
// once each, after the answer was read or the exchange failed: a request that was never
// sent (no token source, the token source failed) is not reported. f runs on the calling
// goroutine before the request's method returns, so it sees requests in the order they
// were made and should be quick. c is unchanged; the copy shares the HTTP client and the
// token source.
func (c *Client) WithObserver(f func(RequestInfo)) *Client {
	cp := *c
	cp.observe = f
	return &cp
}

// Create creates a in Graph (a's ID and timestamps are ignored) and returns
// the object Graph stored, with its new ID. Graph has no idempotency key: if
// OutcomeUnknown(err), the object may exist; list before re-sending.
func (c *Client) Create(ctx context.Context, a Association) (Association, error) {
	// Shaped like the documented example: @odata.type and every writable property, no id,
	// no timestamps, collections always arrays.
	body, err := json.Marshal(FullPatch(a))
	if err != nil {
		return Association{}, err
	}
	res, err := c.do(ctx, http.MethodPost, c.base+resourcePath, body)
	if err != nil {
		return Association{}, err
	}
	var out Association
	if err := res.decode(&out); err != nil {
		return Association{}, err
	}
	if out.ID == "" {
		return Association{}, res.fail(errors.New("created object has no id"))
	}
	return out, nil
}

// Update sends p as a PATCH to the object id. Graph's docs promise 200 with
// the updated object, which is returned; Intune often answers 204 with no
// body, and then Update returns nil, nil (use p.Apply on what was sent, or
// Get). A 404 (IsNotFound) means the object was deleted remotely.
func (c *Client) Update(ctx context.Context, id string, p Patch) (*Association, error) {
	u, err := c.itemURL(id)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	res, err := c.do(ctx, http.MethodPatch, u, body)
	if err != nil {
		return nil, err
	}
	if res.status == http.StatusNoContent || len(bytes.TrimSpace(res.body)) == 0 {
		return nil, nil
	}
	var out Association
	if err := res.decode(&out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Get returns the object id. It accepts a bare object and, as old doc
// examples show, one wrapped in {"value": {...}}.
func (c *Client) Get(ctx context.Context, id string) (Association, error) {
	u, err := c.itemURL(id)
	if err != nil {
		return Association{}, err
	}
	res, err := c.do(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Association{}, err
	}
	var wrapped struct {
		Value json.RawMessage `json:"value"`
	}
	if err := res.decode(&wrapped); err != nil {
		return Association{}, err
	}
	var out Association
	if v := bytes.TrimSpace(wrapped.Value); len(v) > 0 && v[0] == '{' {
		if err := json.Unmarshal(v, &out); err != nil {
			return Association{}, res.fail(fmt.Errorf("decode response: %w", err))
		}
	} else if err := res.decode(&out); err != nil {
		return Association{}, err
	}
	if out.ID == "" {
		return Association{}, res.fail(errors.New("response object has no id"))
	}
	return out, nil
}

// List returns every object, following @odata.nextLink until it is absent
// (see Pages for the paging and nextLink rules). It fails if any object in
// the listing could not be read: a caller that must not miss an object
// (adopting a create whose answer was lost) gets an error rather than a
// silently partial list. Use Pages to get the readable objects and the
// skipped ones.
func (c *Client) List(ctx context.Context) ([]Association, error) {
	var all []Association
	for page, err := range c.Pages(ctx) {
		if err != nil {
			return nil, err
		}
		if len(page.Skipped) > 0 {
			return nil, fmt.Errorf("graph: list: %d object(s) could not be read, first: %w", len(page.Skipped), page.Skipped[0])
		}
		all = append(all, page.Objects...)
	}
	return all, nil
}

// Delete deletes the object id. A 404 (IsNotFound) on a retried delete
// means it is already gone.
func (c *Client) Delete(ctx context.Context, id string) error {
	u, err := c.itemURL(id)
	if err != nil {
		return err
	}
	_, err = c.do(ctx, http.MethodDelete, u, nil)
	return err
}

// origin is scheme://host:port with the default port made explicit, so
// graph.microsoft.com and graph.microsoft.com:443 compare equal.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Hostname()) + ":" + port
}

func (c *Client) itemURL(id string) (string, error) {
	if strings.TrimSpace(id) == "" {
		return "", errors.New("graph: empty id")
	}
	return c.base + resourcePath + "/" + url.PathEscape(id), nil
}

// result is a 2xx answer, body already read and closed.
type result struct {
	method string
	req    *url.URL
	status int
	body   []byte
}

// decode unmarshals the body; a failure is reported as a TransportError
// with Written set, since Graph did answer success.
func (r *result) decode(v any) error {
	if err := json.Unmarshal(r.body, v); err != nil {
		return r.fail(fmt.Errorf("decode response: %w", err))
	}
	return nil
}

func (r *result) fail(err error) error {
	return &TransportError{Method: r.method, Path: r.req.Path, Status: r.status, Written: true, Err: err}
}

// do performs one request. It sets the context, a fresh client-request-id,
// Accept, Content-Type (with a body) and the bearer token; reads at most
// maxBody bytes, drains and closes the body; returns *APIError for non-2xx
// and *TransportError when no usable answer came back; tells the observer,
// if any, of every request sent. It never logs and never retries.
func (c *Client) do(ctx context.Context, method, rawURL string, body []byte) (_ *result, err error) {
	if c.ts == nil {
		return nil, ErrNoTokenSource
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	// Record whether the whole request went out, to tell a dial failure
	// (nothing sent) from a lost response (Graph may have acted).
	var written atomic.Bool
	trace := &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				written.Store(true)
			}
		},
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, rawURL, rd)
	if err != nil {
		return nil, fmt.Errorf("graph: build request: %w", err)
	}
	// Never set Idempotency-Key or X-Idempotency-Key: net/http would then
	// silently re-send a POST on a broken keep-alive connection, and Graph
	// has no idempotency keys, so that could create duplicates.
	crid := uuid.NewString()
	req.Header.Set("client-request-id", crid)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "cartclass")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	tok, err := c.ts.Token()
	if err != nil {
		return nil, fmt.Errorf("graph: get token: %w", err)
	}
	if tok.AccessToken == "" {
		return nil, errors.New("graph: token source returned an empty access token")
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)

	start := time.Now()
	status, respID := 0, ""
	if c.observe != nil {
		// Registered before the body's close: runs last, once whatever the outcome.
		defer func() {
			info := RequestInfo{Method: method, Path: req.URL.Path, Start: start, Duration: time.Since(start),
				Status: status, RequestID: respID, ClientRequestID: crid, Err: err}
			var ae *APIError
			if errors.As(err, &ae) {
				info.Code, info.RequestID = ae.Code, ae.RequestID
			}
			c.observe(info)
		}()
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, &TransportError{Method: method, Path: req.URL.Path, Written: written.Load(), Err: err}
	}
	status, respID = resp.StatusCode, resp.Header.Get("request-id")
	defer func() {
		// Drain a little so the connection can be reused, then close.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	data, readErr := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	tooBig := len(data) > maxBody
	if tooBig {
		data = data[:maxBody]
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// A definite answer even if the body was cut short.
		return nil, newAPIError(resp, data, crid)
	}
	res := &result{method: method, req: req.URL, status: resp.StatusCode, body: data}
	switch {
	case readErr != nil:
		return nil, res.fail(fmt.Errorf("read response: %w", readErr))
	case tooBig:
		return nil, res.fail(fmt.Errorf("response larger than %d bytes", maxBody))
	}
	return res, nil
}
