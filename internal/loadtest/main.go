// Command loadtest measures what admins meet when many of them use cartclass at once: it
// builds cartclass, starts it in -dev mode on loopback over a seeded SQLite database, signs
// admins in through the real OpenID Connect flow, and sends requests back to back from many
// keep-alive connections, each from its own loopback source address, while recording every
// latency.
//
// Reads (per database size): GET /healthz, the list page, and the search box's htmx
// fragment for a common term ("science", about 30 % of rows), a rare one ("zebrafinch",
// 5 rows) and a two-letter one ("sc"). Saves (one size): N admins each posting the
// new-association form in a loop, once alone and once beside a flood of anonymous clients
// hammering the sign-in endpoints; afterwards the saves answered are compared with the rows
// stored.
//
// The same run measures a reference: a separate process serving a fixed 20 KB HTML page
// with bare net/http, first and again last. Absolute requests/s on a small, shared machine
// move from run to run; the ratio to the reference does much less, so read the ratio column:
// 0.25 means cartclass answers that request at a quarter of the rate plain net/http serves
// a static page of the list page's size here, now. Compare ratios between commits; if the
// reference's first and last figures differ by more than a few percent, the machine was
// busy and the run is noise. "server CPU/req" (CPU time the serving process used divided by
// the requests answered) is the other figure that travels between runs.
//
// The run is bounded (-timeout), stops by itself, kills its servers on exit (also on
// Ctrl-C), removes its temporary files (seeded databases stay cached in
// os.TempDir()/cartclass-loadtest), and sends traffic only to 127.0.0.0/8. The report is
// Markdown on stdout (and -out); progress goes to stderr.
//
//	go run ./internal/loadtest                 # the whole run, about 6 minutes
//	go run ./internal/loadtest -sizes 10000 -duration 3s -admins 20 -save-duration 5s
//	go run ./internal/loadtest -cartclass-src /tmp/cartclass-base   # measure another tree
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	sizes        []int
	duration     time.Duration
	conns        int
	admins       []int
	saveDuration time.Duration
	saveSize     int
	flood        int
	timeout      time.Duration
	reqTimeout   time.Duration
	out          string
	src          string
	binary       string
	user         string
}

func main() {
	// The reference server is this program run again with a flag no one else uses.
	if len(os.Args) == 3 && os.Args[1] == "-bare-server" {
		if err := serveBare(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "bare server:", err)
			os.Exit(1)
		}
		return
	}
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := loadtest(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		stop()
		cancel()
		os.Exit(1)
	}
}

func parseFlags() (options, error) {
	var o options
	sizes := flag.String("sizes", "10000,100000", "comma-separated numbers of associations to seed; each size is one read run")
	admins := flag.String("admins", "20,100,200", "comma-separated numbers of admins saving at once")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each read scenario")
	flag.IntVar(&o.conns, "conns", 50, "concurrent connections (signed-in admins for list pages) in each read scenario")
	flag.DurationVar(&o.saveDuration, "save-duration", 20*time.Second, "length of each save scenario")
	flag.IntVar(&o.saveSize, "save-size", 10000, "the size whose server also runs the save scenarios (0: none)")
	flag.IntVar(&o.flood, "flood", 128, "anonymous clients hammering the sign-in endpoints during the second run of each save scenario")
	flag.DurationVar(&o.timeout, "timeout", 20*time.Minute, "deadline for the whole run")
	flag.DurationVar(&o.reqTimeout, "request-timeout", 30*time.Second, "deadline for each request")
	flag.StringVar(&o.out, "out", "", "also write the report to this file")
	flag.StringVar(&o.src, "cartclass-src", "", "source tree to build cartclass from (default: this module's root)")
	flag.StringVar(&o.binary, "binary", "", "a cartclass binary to run instead of building one")
	flag.StringVar(&o.user, "user", "Dev Admin", "the dev identity provider's user to sign in as")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./internal/loadtest [flags]\n\n"+
			"Load-tests a real cartclass process beside a bare net/http server on loopback and\n"+
			"prints a Markdown report.\n\nFlags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	var err error
	if o.sizes, err = intList(*sizes, 100); err != nil {
		return o, fmt.Errorf("-sizes: %w", err)
	}
	if o.admins, err = intList(*admins, 1); err != nil {
		return o, fmt.Errorf("-admins: %w", err)
	}
	switch {
	case o.conns < 1:
		return o, errors.New("-conns must be at least 1")
	case o.flood < 0:
		return o, errors.New("-flood must not be negative")
	case o.duration <= 0 || o.saveDuration <= 0 || o.timeout <= 0 || o.reqTimeout <= 0:
		return o, errors.New("durations must be positive")
	}
	return o, nil
}

// intList parses "10000,100000", each at least lo.
func intList(s string, lo int) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < lo {
			return nil, fmt.Errorf("%q is not a whole number of at least %d", f, lo)
		}
		out = append(out, n)
	}
	return out, nil
}

// progress is a line on stderr saying what the run is doing.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

// env is what every size's run shares.
type env struct {
	opts      options
	tmp       string   // removed at the end
	bin       string   // the cartclass binary
	bare      *process // the reference server
	bareURL   string
	emptyDB   string // the schema without data, which seeded files start from
	schemaKey string
}

// loadtest builds and starts what the run needs, measures each size and prints the report,
// also when the run is cut short.
func loadtest(ctx context.Context, o options) error {
	if err := checkSourceAddresses(); err != nil {
		return err
	}
	rep := newReport(o)
	e := &env{opts: o}
	var err error
	if e.tmp, err = os.MkdirTemp("", "cartclass-loadtest-run-"); err != nil {
		return err
	}
	defer os.RemoveAll(e.tmp)

	runErr := func() error {
		root, err := repoRoot(ctx)
		if err != nil {
			return err
		}
		src := o.src
		if src == "" {
			src = root
		}
		if e.bin = o.binary; e.bin == "" {
			rep.server = describeSource(ctx, src)
			progress("building cartclass from %s", src)
			if e.bin, err = buildCartclass(ctx, src, e.tmp); err != nil {
				return err
			}
		} else {
			rep.server = "binary " + o.binary
		}
		// The schema comes from this module's store package when the server is built from
		// this module; another tree or binary may have other migrations, so then the
		// server itself creates it, once, on an empty file.
		create, how := storeSchema(ctx), "store.Open"
		if o.binary != "" || !sameDir(src, root) {
			create, how = e.serverSchema(ctx), "the server under test"
		}
		e.emptyDB = filepath.Join(e.tmp, "schema.db")
		version, key, err := schema(ctx, e.emptyDB, create)
		if err != nil {
			return err
		}
		e.schemaKey = key
		rep.schema = fmt.Sprintf("version %d, created by %s (key %s)", version, how, key)
		if e.bare, e.bareURL, err = startBare(ctx); err != nil {
			return err
		}
		defer e.bare.stop()
		for _, size := range o.sizes {
			sr := &sizeReport{size: size}
			rep.sizes = append(rep.sizes, sr)
			if err := e.measure(ctx, sr); err != nil {
				return fmt.Errorf("%d associations: %w", size, err)
			}
		}
		return nil
	}()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		runErr = fmt.Errorf("the -timeout of %s was reached: %w", o.timeout, runErr)
	}
	if runErr != nil {
		rep.note("The run stopped early: %v", runErr)
	}
	text := rep.markdown()
	fmt.Print(text)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
			return errors.Join(runErr, err)
		}
	}
	return runErr
}

// checkSourceAddresses makes sure this machine lets a client bind loopback addresses other
// than 127.0.0.1, which every simulated person needs.
func checkSourceAddresses() error {
	for _, ip := range []net.IP{loopbackIP(blockAdmins, 0), loopbackIP(blockFlood, 300)} {
		ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: ip})
		if err != nil {
			return fmt.Errorf("cannot use %s as a source address (each simulated client needs its own loopback address; on Linux all of 127.0.0.0/8 works): %w", ip, err)
		}
		ln.Close()
	}
	return nil
}

// measure runs one size: a fresh copy of the seeded database, a fresh cartclass, the reads,
// and (for the save size) the saves.
func (e *env) measure(ctx context.Context, sr *sizeReport) error {
	o := e.opts
	seed, err := seeded(ctx, sr.size, e.emptyDB, e.schemaKey)
	if err != nil {
		return err
	}
	db := filepath.Join(e.tmp, fmt.Sprintf("run-%d.db", sr.size))
	if err := copyFile(seed, db); err != nil {
		return err
	}
	if sr.facts, err = readFacts(ctx, db); err != nil {
		return fmt.Errorf("read the seeded database: %w", err)
	}
	progress("starting cartclass on %d associations", sr.size)
	srv, err := startCartclass(ctx, e.bin, db, filepath.Join(e.tmp, fmt.Sprintf("cartclass-%d.log", sr.size)))
	if err != nil {
		return err
	}
	sr.hwmReads, sr.hwmEnd = -1, -1
	defer func() {
		srv.stop()
		sr.rssMax = srv.peakRSS.Load()
		sr.logErrors, sr.firstLogErrors = srv.logErrors()
	}()
	saves := sr.size == o.saveSize && len(o.admins) > 0
	n := o.conns
	if saves {
		n = max(n, slices.Max(o.admins))
	}
	progress("signing in %d admins", n)
	t0 := time.Now()
	admins, err := signInAll(ctx, n, 16, srv, o.user, o.reqTimeout)
	if err != nil {
		return fmt.Errorf("sign-in: %w\nserver log:\n%s", err, tail(srv.stderrLog, 10))
	}
	defer closeAll(admins)
	sr.admins, sr.signIn = n, time.Since(t0)
	progress("signed in %d admins in %.1fs", n, sr.signIn.Seconds())

	if err := e.reads(ctx, sr, srv, admins); err != nil {
		return err
	}
	if sr.hwmReads, err = procStatus(srv.pid(), "VmHWM"); err != nil {
		sr.hwmReads = -1
	}
	if saves {
		if err := e.saves(ctx, sr, srv, admins, db); err != nil {
			return err
		}
	}
	if sr.hwmEnd, err = procStatus(srv.pid(), "VmHWM"); err != nil {
		sr.hwmEnd = -1
	}
	if srv.exited() {
		return fmt.Errorf("cartclass exited during the run: %v\n%s", srv.err, tail(srv.stderrLog, 20))
	}
	srv.stop() // so that every save has reached the file before counting
	if saves {
		total, err := countAssociations(ctx, db)
		if err != nil {
			return err
		}
		sr.storedTotal, sr.counted = total-sr.facts.total, true
	}
	return nil
}

func closeAll(cs []*client) {
	for _, c := range cs {
		c.close()
	}
}

// reads runs the read scenarios, the reference server first and last.
func (e *env) reads(ctx context.Context, sr *sizeReport, srv *cartclass, admins []*client) error {
	o := e.opts
	anon := make([]*client, o.conns)
	for i := range anon {
		anon[i] = newClient(loopbackIP(blockAnon, i), o.reqTimeout, false)
	}
	defer closeAll(anon)
	readers := admins[:o.conns]
	fragment := func(q string) *request {
		return &request{
			method: http.MethodGet,
			url:    srv.base + "/associations?q=" + url.QueryEscape(q),
			header: http.Header{
				"Hx-Request":     {"true"},
				"Hx-Target":      {"association-table"},
				"Hx-Current-Url": {srv.base + "/associations"},
			},
			check: isFragment,
		}
	}
	get := func(u string, check func(*http.Response, []byte) error) *request {
		return &request{method: http.MethodGet, url: u, header: http.Header{"Accept": {"text/html"}}, check: check}
	}
	f := sr.facts
	scenarios := []struct {
		what    string
		target  *process
		clients []*client
		req     *request
		bare    bool
	}{
		{"bare net/http, 20 KB page (first)", e.bare, anon, get(e.bareURL+"/", nil), true},
		{"GET /healthz", srv.process, anon, get(srv.base+"/healthz", nil), false},
		{"list page, full (GET /associations)", srv.process, readers, get(srv.base+"/associations", bodyHas(`data-testid="association-table"`)), false},
		{fmt.Sprintf("search %q, fragment (%s matches)", commonTerm, thousands(f.common)), srv.process, readers, fragment(commonTerm), false},
		{fmt.Sprintf("search %q, fragment (%s matches)", rareTerm, thousands(f.rare)), srv.process, readers, fragment(rareTerm), false},
		{fmt.Sprintf("search %q, fragment (%s matches)", shortTerm, thousands(f.short)), srv.process, readers, fragment(shortTerm), false},
		{"bare net/http, 20 KB page (last)", e.bare, anon, get(e.bareURL+"/", nil), true},
	}
	for _, s := range scenarios {
		progress("%d: %s, %d connections for %s", sr.size, s.what, len(s.clients), o.duration)
		cpu0, _ := cpuTime(s.target.pid())
		res := drive(ctx, o.duration, s.clients, func(int) []*request { return []*request{s.req} })
		cpu1, err := cpuTime(s.target.pid())
		if ctx.Err() != nil {
			return ctx.Err() // cut short: not a measurement
		}
		row := readRow{what: s.what, res: res, cpu: -1, rows: -1, bare: s.bare}
		if err == nil {
			row.cpu = cpu1 - cpu0
		}
		if s.req.check != nil {
			row.rows = strings.Count(string(res.body), `data-testid="association-row"`)
		}
		sr.reads = append(sr.reads, row)
		progress("  %s req/s, p50 %s, p99 %s, %d errors", rate(res.rate()), ms(res.percentile(.5)), ms(res.percentile(.99)), res.errors)
		if srv.exited() {
			return fmt.Errorf("cartclass exited: %v\n%s", srv.err, tail(srv.stderrLog, 20))
		}
	}
	return nil
}

// isFragment checks an htmx answer for the list: status 200, the table, no page around it.
func isFragment(res *http.Response, body []byte) error {
	if err := bodyHas(`id="association-table"`)(res, body); err != nil {
		return err
	}
	if strings.Contains(strings.ToLower(string(body[:min(len(body), 512)])), "<html") {
		return errors.New("a whole page, not the fragment")
	}
	return nil
}

var createdURL = regexp.MustCompile(`^/associations/[0-9]+$`)

// saves runs, for each number of admins, the save scenario without and then with the
// sign-in flood, and counts the rows each stored.
func (e *env) saves(ctx context.Context, sr *sizeReport, srv *cartclass, admins []*client, db string) error {
	o := e.opts
	flooders := make([]*client, o.flood)
	for i := range flooders {
		flooders[i] = newClient(loopbackIP(blockFlood, i), o.reqTimeout, false)
	}
	defer closeAll(flooders)
	save := func(i int) []*request {
		return []*request{{
			method: http.MethodPost,
			url:    srv.base + "/associations",
			header: sameOrigin(srv.base),
			form: func(seq int) url.Values {
				return url.Values{
					"revision":      {"0"},
					"displayName":   {fmt.Sprintf("Load test iPads %d-%d", i, seq)},
					"description":   {"Saved by the load test."},
					"version":       {"1"},
					"deviceCartIds": {fmt.Sprintf("cart-%d\ncart-%d", 9000+i, 9500+seq%100)},
					"classroomIds":  {fmt.Sprintf("room-%d", 100+seq%900)},
				}
			},
			check: func(res *http.Response, body []byte) error {
				if res.StatusCode != http.StatusSeeOther || !createdURL.MatchString(res.Header.Get("Location")) {
					return fmt.Errorf("status %d, Location %q", res.StatusCode, res.Header.Get("Location"))
				}
				return nil
			},
		}}
	}
	flood := []*request{
		{method: http.MethodPost, url: srv.base + "/auth/login", header: sameOrigin(srv.base),
			form:  func(int) url.Values { return url.Values{"next": {"/associations"}} },
			check: func(*http.Response, []byte) error { return nil }},
		{method: http.MethodGet, url: srv.base + "/auth/callback?state=x&code=y",
			check: func(*http.Response, []byte) error { return nil }},
	}
	for _, n := range o.admins {
		for _, withFlood := range []bool{false, true} {
			if withFlood && o.flood == 0 {
				continue
			}
			what := "alone"
			if withFlood {
				what = fmt.Sprintf("with %d clients flooding sign-in", o.flood)
			}
			progress("saves: %d admins %s, for %s", n, what, o.saveDuration)
			before, err := countAssociations(ctx, db)
			if err != nil {
				return err
			}
			row := saveRow{admins: n, flood: withFlood}
			floodDone := make(chan *result, 1)
			if withFlood {
				go func() { floodDone <- drive(ctx, o.saveDuration, flooders, func(int) []*request { return flood }) }()
			}
			row.res = drive(ctx, o.saveDuration, admins[:n], save)
			if withFlood {
				row.floodRes = <-floodDone
			}
			after, err := countAssociations(ctx, db)
			if err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			row.answered, row.stored = row.res.requests-row.res.errors, after-before
			sr.saves = append(sr.saves, row)
			sr.answeredTotal += row.answered
			progress("  %s saves/s, p50 %s, p99 %s, %d errors; answered %d, stored %d", rate(row.res.rate()),
				ms(row.res.percentile(.5)), ms(row.res.percentile(.99)), row.res.errors, row.answered, row.stored)
			if row.floodRes != nil {
				progress("  flood: %s req/s, %s", rate(row.floodRes.rate()), statuses(row.floodRes.statuses))
			}
			if srv.exited() {
				return fmt.Errorf("cartclass exited: %v\n%s", srv.err, tail(srv.stderrLog, 20))
			}
		}
	}
	return nil
}

// describeSource names the source tree and its commit.
func describeSource(ctx context.Context, src string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", src, "log", "-1", "--format=%h %s").Output()
	if err != nil {
		return "built from " + src
	}
	return fmt.Sprintf("built from %s at %s", src, strings.TrimSpace(string(out)))
}

// serverSchema creates the schema by running the cartclass binary once on an empty file.
func (e *env) serverSchema(ctx context.Context) func(path string) error {
	return func(path string) error {
		srv, err := startCartclass(ctx, e.bin, path, path+".log")
		if err != nil {
			return err
		}
		srv.stop()
		return srv.err
	}
}

// sameDir reports whether a and b name the same directory.
func sameDir(a, b string) bool {
	ia, err1 := os.Stat(a)
	ib, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(ia, ib)
}
