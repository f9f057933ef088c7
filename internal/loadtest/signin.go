package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// signInAll signs in n admins, each its own client with its own source address
// (127.2.x.y) and cookie jar, at most parallel at a time.
func signInAll(ctx context.Context, n, parallel int, srv *cartclass, user string, timeout time.Duration) ([]*client, error) {
	clients := make([]*client, n)
	errs := make([]error, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range n {
		clients[i] = newClient(loopbackIP(blockAdmins, i), timeout, true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := signIn(ctx, clients[i], srv.base, srv.issuer, user); err != nil {
				errs[i] = fmt.Errorf("admin %d (from %s): %w", i, clients[i].ip, err)
			}
		}()
	}
	wg.Wait()
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		closeAll(clients)
		return nil, fmt.Errorf("%d of %d sign-ins failed, the first: %w", len(failed), n, errors.Join(failed[:min(3, len(failed))]...))
	}
	return clients, nil
}

var (
	loginForm     = regexp.MustCompile(`<form[^>]*\smethod="post"[^>]*\saction="([^"]*)"`)
	authRequestID = regexp.MustCompile(`name="authRequestID" value="([^"]*)"`)
)

// signIn goes through cartclass's sign-in as a browser does: the sign-in page, its button
// (POST /auth/login), the provider's redirects to its login page, the button of user
// there, the redirects back to /auth/callback, and the callback, which sets the session
// cookie. It then checks that the list page opens.
func signIn(ctx context.Context, c *client, base, issuer, user string) error {
	res, body, err := c.fetch(ctx, http.MethodGet, base+"/signin?next=%2Fassociations", nil, nil)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`action="/auth/login"`)) {
		return fmt.Errorf("GET /signin: status %d, no sign-in button", res.StatusCode)
	}
	res, _, err = c.fetch(ctx, http.MethodPost, base+"/auth/login", url.Values{"next": {"/associations"}}, sameOrigin(base))
	if err != nil {
		return err
	}
	authorize := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(authorize, issuer) {
		return fmt.Errorf("POST /auth/login: status %d, Location %q; want a redirect to %s", res.StatusCode, authorize, issuer)
	}

	// The provider's authorize endpoint redirects to its login page.
	page, body, err := c.follow(ctx, authorize, func(*url.URL) bool { return false })
	if err != nil {
		return err
	}
	action, id, subject, err := parseLoginPage(body, user)
	if err != nil {
		return fmt.Errorf("login page %s: %w", page, err)
	}
	target, err := page.Parse(action)
	if err != nil {
		return err
	}
	res, _, err = c.fetch(ctx, http.MethodPost, target.String(),
		url.Values{"authRequestID": {id}, "subject": {subject}}, sameOrigin(issuer))
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 3 {
		return fmt.Errorf("POST %s: status %d", target, res.StatusCode)
	}

	// Its redirects end at cartclass's callback, which signs the admin in.
	next, err := target.Parse(res.Header.Get("Location"))
	if err != nil {
		return err
	}
	isCallback := func(u *url.URL) bool { return strings.HasPrefix(u.String(), base+"/auth/callback?") }
	callback, _, err := c.follow(ctx, next.String(), isCallback)
	if err != nil {
		return err
	}
	if !isCallback(callback) {
		return fmt.Errorf("the provider's redirects ended at %s, not at the callback", callback)
	}
	res, body, err = c.fetch(ctx, http.MethodGet, callback.String(), nil, nil)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/associations" {
		return fmt.Errorf("GET /auth/callback: status %d, Location %q: %.300s", res.StatusCode, res.Header.Get("Location"), body)
	}
	u, _ := url.Parse(base + "/")
	hasSession := false
	for _, ck := range c.jar.Cookies(u) {
		hasSession = hasSession || strings.HasSuffix(ck.Name, "cartclass_session")
	}
	if !hasSession {
		return errors.New("signed in without a cartclass_session cookie")
	}
	res, body, err = c.fetch(ctx, http.MethodGet, base+"/associations", nil, nil)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`association-table`)) {
		return fmt.Errorf("GET /associations after signing in: status %d, Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	return nil
}

// parseLoginPage finds, on the dev provider's login page, the form's action, its
// authRequestID and the value of the "Sign in as <user>" button.
func parseLoginPage(body []byte, user string) (action, id, subject string, err error) {
	button := regexp.MustCompile(`<button[^>]*\sname="subject" value="([^"]*)"[^>]*>Sign in as ` + regexp.QuoteMeta(html.EscapeString(user)) + `<`)
	m1, m2, m3 := loginForm.FindSubmatch(body), authRequestID.FindSubmatch(body), button.FindSubmatch(body)
	if m1 == nil || m2 == nil || m3 == nil {
		return "", "", "", fmt.Errorf("no form with an authRequestID and a %q button", "Sign in as "+user)
	}
	return html.UnescapeString(string(m1[1])), html.UnescapeString(string(m2[1])), html.UnescapeString(string(m3[1])), nil
}

// sameOrigin is what a browser sends with a form posted from a page of origin.
func sameOrigin(origin string) http.Header {
	u, _ := url.Parse(origin)
	return http.Header{"Origin": {u.Scheme + "://" + u.Host}, "Sec-Fetch-Site": {"same-origin"}}
}

// fetch sends one request (a form POST when form is not nil) and reads the answer.
func (c *client) fetch(ctx context.Context, method, rawURL string, form url.Values, hdr http.Header) (*http.Response, []byte, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, body)
	if err != nil {
		return nil, nil, err
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: reading body: %w", method, rawURL, err)
	}
	return res, b, nil
}

// follow GETs rawURL and the redirects after it, at most 10, until stop accepts the next
// URL (which is returned unvisited) or an answer is not a redirect (its URL and body are
// returned).
func (c *client) follow(ctx context.Context, rawURL string, stop func(*url.URL) bool) (*url.URL, []byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, err
	}
	for range 10 {
		if stop(u) {
			return u, nil, nil
		}
		res, body, err := c.fetch(ctx, http.MethodGet, u.String(), nil, nil)
		if err != nil {
			return nil, nil, err
		}
		if res.StatusCode/100 != 3 {
			if res.StatusCode != http.StatusOK {
				return nil, nil, fmt.Errorf("GET %s: status %d: %.300s", u, res.StatusCode, body)
			}
			return u, body, nil
		}
		if u, err = u.Parse(res.Header.Get("Location")); err != nil {
			return nil, nil, err
		}
	}
	return nil, nil, fmt.Errorf("more than 10 redirects from %s", rawURL)
}
