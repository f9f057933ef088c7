package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// client is one simulated person: its own loopback source address, its own keep-alive
// connection pool and, when signed in, its own cookie jar. Redirects are never followed, so
// a 303 to the sign-in page is seen as what it is.
type client struct {
	ip   net.IP
	http *http.Client
	jar  http.CookieJar // nil for anonymous clients
}

func newClient(ip net.IP, timeout time.Duration, withJar bool) *client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:         loopbackOnly(d),
		MaxIdleConns:        8,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	c := &client{ip: ip, http: &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	if withJar {
		jar, _ := cookiejar.New(nil)
		c.jar, c.http.Jar = jar, jar
	}
	return c
}

// loopbackOnly dials only IPv4 loopback addresses (127.0.0.0/8): this program must never
// send traffic anywhere else, whatever a server redirects it to.
func loopbackOnly(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		ips, err := net.DefaultResolver.LookupIP(ctx, "ip4", host)
		if err != nil {
			return nil, err
		}
		for _, ip := range ips {
			if ip.IsLoopback() {
				return d.DialContext(ctx, "tcp4", net.JoinHostPort(ip.String(), port))
			}
		}
		return nil, fmt.Errorf("refusing to connect to %s: not a loopback address", addr)
	}
}

func (c *client) close() { c.http.CloseIdleConnections() }

// loopbackIP is the index-th address of the 127.<block>.x.y range, skipping .0 and .255.
func loopbackIP(block byte, index int) net.IP {
	return net.IPv4(127, block, byte(index/254), byte(index%254+1)).To4()
}

// Source-address blocks: admins, anonymous readers and the sign-in flood each have their own.
const (
	blockFlood  = 1
	blockAdmins = 2
	blockAnon   = 3
)

// request is one request a worker sends again and again.
type request struct {
	method string
	url    string
	header http.Header
	form   func(seq int) url.Values // body for POST, built per request
	// check says what makes an answer a success; nil means "status 200".
	check func(res *http.Response, body []byte) error
}

// send performs r once (the seq-th time for this worker), reading the whole body into buf.
// It returns the status (0 when there was no answer) and why it is not a success, if it
// is not.
func (c *client) send(ctx context.Context, r *request, seq int, buf *bytes.Buffer) (int, error) {
	var body io.Reader
	if r.form != nil {
		body = strings.NewReader(r.form(seq).Encode())
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, body)
	if err != nil {
		return 0, err
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	if r.form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	buf.Reset()
	_, err = buf.ReadFrom(io.LimitReader(res.Body, 8<<20))
	res.Body.Close()
	if err != nil {
		return res.StatusCode, fmt.Errorf("reading body: %w", err)
	}
	if r.check != nil {
		return res.StatusCode, r.check(res, buf.Bytes())
	}
	if res.StatusCode != http.StatusOK {
		return res.StatusCode, fmt.Errorf("status %d", res.StatusCode)
	}
	return res.StatusCode, nil
}

// bodyHas is a check: status 200 and a body containing marker.
func bodyHas(marker string) func(*http.Response, []byte) error {
	m := []byte(marker)
	return func(res *http.Response, body []byte) error {
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d (Location %q)", res.StatusCode, res.Header.Get("Location"))
		}
		if !bytes.Contains(body, m) {
			return fmt.Errorf("status 200 without %q in the body", marker)
		}
		return nil
	}
}

// result is what one scenario measured.
type result struct {
	requests int
	errors   int
	elapsed  time.Duration
	lat      []time.Duration // sorted
	statuses map[int]int     // 0: no answer
	firstErr string
	body     []byte // the first successful answer's body, for describing what was served
}

func (r *result) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

// percentile returns the q-quantile (0 < q ≤ 1) of the latencies, nearest rank.
func (r *result) percentile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(q*float64(len(r.lat))+0.999999) - 1
	return r.lat[max(0, min(i, len(r.lat)-1))]
}

func (r *result) slowest() time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[len(r.lat)-1]
}

// drive has every client send its requests (in turn, when it has several) back to back, one
// at a time on its own keep-alive connection, until d has passed or ctx ends; requests in
// flight then are completed and counted.
func drive(ctx context.Context, d time.Duration, clients []*client, reqs func(i int) []*request) *result {
	type part struct {
		lat      []time.Duration
		statuses map[int]int
		errors   int
		firstErr string
		body     []byte
	}
	parts := make([]part, len(clients))
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &parts[i]
			p.statuses = map[int]int{}
			p.lat = make([]time.Duration, 0, 1024)
			rs := reqs(i)
			var buf bytes.Buffer
			for seq := 0; time.Now().Before(end) && ctx.Err() == nil; seq++ {
				r := rs[seq%len(rs)]
				t0 := time.Now()
				status, err := c.send(ctx, r, seq, &buf)
				if ctx.Err() != nil {
					return // interrupted: not an answer of the server
				}
				p.lat = append(p.lat, time.Since(t0))
				p.statuses[status]++
				if err != nil {
					p.errors++
					if p.firstErr == "" {
						p.firstErr = fmt.Sprintf("%s %s: %v", r.method, r.url, err)
					}
				} else if p.body == nil {
					p.body = bytes.Clone(buf.Bytes())
				}
			}
		}()
	}
	wg.Wait()
	res := &result{elapsed: time.Since(start), statuses: map[int]int{}}
	for _, p := range parts {
		res.lat = append(res.lat, p.lat...)
		res.errors += p.errors
		for s, n := range p.statuses {
			res.statuses[s] += n
		}
		if res.firstErr == "" {
			res.firstErr = p.firstErr
		}
		if res.body == nil {
			res.body = p.body
		}
	}
	res.requests = len(res.lat)
	slices.Sort(res.lat)
	return res
}
