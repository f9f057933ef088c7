package main

import (
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// report is everything the run measured, printed as Markdown at the end.
type report struct {
	opts    options
	started time.Time
	server  string // where the cartclass binary came from
	schema  string // the seeded databases' schema
	sizes   []*sizeReport
	notes   []string
}

// sizeReport is one database size's run.
type sizeReport struct {
	size           int
	facts          dataFacts
	admins         int
	signIn         time.Duration
	reads          []readRow
	saves          []saveRow
	hwmReads       int64 // VmHWM after the reads, bytes (-1: unknown)
	hwmEnd         int64 // VmHWM at the end
	rssMax         int64 // highest VmRSS sampled every 500 ms
	answeredTotal  int   // saves answered 303 over all save scenarios
	storedTotal    int   // associations added, counted after the server stopped
	counted        bool  // storedTotal was counted
	logErrors      int
	firstLogErrors []string
}

type readRow struct {
	what string
	res  *result
	cpu  time.Duration // CPU the serving process used (-1: unknown)
	rows int           // rows in the first table served (-1: not a table)
	bare bool          // the reference server
}

type saveRow struct {
	admins           int
	flood            bool    // run beside the sign-in flood
	res              *result // the admins' saves
	floodRes         *result // the flood's requests, when flood
	answered, stored int     // saves answered 303; rows the run added
}

func newReport(o options) *report { return &report{opts: o, started: time.Now()} }

func (r *report) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *report) markdown() string {
	var b strings.Builder
	o := r.opts
	fmt.Fprintf(&b, "# cartclass load test\n\n")
	fmt.Fprintf(&b, "- Date: %s\n", r.started.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %d CPUs (%s), %s/%s, %s\n", runtime.NumCPU(), cpuModel(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Fprintf(&b, "- cartclass: %s; `-dev`, log level warn, on loopback\n", r.server)
	fmt.Fprintf(&b, "- Schema: %s\n", r.schema)
	fmt.Fprintf(&b, "- Reads: %d keep-alive connections for %s per scenario, each its own source address (list pages: each its own signed-in admin)\n", o.conns, o.duration)
	fmt.Fprintf(&b, "- ratio = req/s ÷ the bare net/http server's req/s in the same table (mean of its first and last runs); compare ratios between runs, not req/s\n")
	fmt.Fprintf(&b, "- server CPU/req = CPU time of the serving process ÷ requests answered\n")
	for _, n := range r.notes {
		fmt.Fprintf(&b, "\n**Note:** %s\n", n)
	}
	for _, s := range r.sizes {
		s.markdown(&b, o)
	}
	return b.String()
}

func (s *sizeReport) markdown(b *strings.Builder, o options) {
	fmt.Fprintf(b, "\n## %s associations\n\n", thousands(s.size))
	f := s.facts
	fmt.Fprintf(b, "Seeded: %s rows; %q matches %s, %q %s, %q %s. %d admins signed in (real OIDC flow) in %.1fs.\n",
		thousands(f.total), commonTerm, thousands(f.common), rareTerm, thousands(f.rare), shortTerm, thousands(f.short),
		s.admins, s.signIn.Seconds())
	if len(s.reads) > 0 {
		var first, last float64
		for _, r := range s.reads {
			if r.bare && first == 0 {
				first = r.res.rate()
			} else if r.bare {
				last = r.res.rate()
			}
		}
		base := first
		if last > 0 {
			base = (first + last) / 2
		}
		fmt.Fprintf(b, "\n### Reads\n\n")
		fmt.Fprintf(b, "| what | req/s | ratio | p50 | p99 | max | errors | rows shown | server CPU/req |\n")
		fmt.Fprintf(b, "|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, r := range s.reads {
			rows := "–"
			if r.rows >= 0 {
				rows = fmt.Sprint(r.rows)
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.what, rate(r.res.rate()), ratio(r.res.rate(), base),
				ms(r.res.percentile(.5)), ms(r.res.percentile(.99)), ms(r.res.slowest()), errorCell(r.res), rows, perRequest(r.cpu, r.res.requests))
		}
		if last > 0 {
			fmt.Fprintf(b, "\nReference: %s req/s first, %s req/s last (%+.1f %%): ", rate(first), rate(last), 100*(last-first)/first)
			if d := (last - first) / first; d > 0.1 || d < -0.1 {
				fmt.Fprintf(b, "**the machine was not steady; treat this table as noise**.\n")
			} else {
				fmt.Fprintf(b, "steady enough.\n")
			}
		}
		for _, r := range s.reads {
			if r.res.errors > 0 {
				fmt.Fprintf(b, "\nFirst error of %q: %s\n", r.what, r.res.firstErr)
			}
		}
		fmt.Fprintf(b, "\nPeak RSS of cartclass: %s after the reads (VmHWM)", mib(s.hwmReads))
		if len(s.saves) > 0 {
			fmt.Fprintf(b, ", %s after the saves", mib(s.hwmEnd))
		}
		fmt.Fprintf(b, "; highest VmRSS sampled every 500 ms: %s.\n", mib(s.rssMax))
	}
	if len(s.saves) > 0 {
		fmt.Fprintf(b, "\n### Saves\n\n")
		fmt.Fprintf(b, "Each admin posts the new-association form back to back for %s (success: 303 to the new association). ", o.saveDuration)
		fmt.Fprintf(b, "The flood: %d anonymous clients, each its own source address, alternating POST /auth/login and GET /auth/callback?state=x&code=y.\n\n", o.flood)
		fmt.Fprintf(b, "| admins | flood | saves/s | p50 | p99 | max | errors | flood req/s | flood statuses | answered / stored | cost of the flood |\n")
		fmt.Fprintf(b, "|--:|---|--:|--:|--:|--:|--:|--:|---|--:|--:|\n")
		alone := map[int]float64{}
		for _, r := range s.saves {
			flood, floodRate, floodStatuses, cost := "—", "—", "—", "—"
			if !r.flood {
				alone[r.admins] = r.res.rate()
			} else {
				flood = fmt.Sprintf("%d clients", o.flood)
				floodRate, floodStatuses = rate(r.floodRes.rate()), statuses(r.floodRes.statuses)
				if a := alone[r.admins]; a > 0 {
					cost = fmt.Sprintf("%.0f %%", 100*(1-r.res.rate()/a))
				}
			}
			fmt.Fprintf(b, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s |\n", r.admins, flood, rate(r.res.rate()),
				ms(r.res.percentile(.5)), ms(r.res.percentile(.99)), ms(r.res.slowest()), errorCell(r.res),
				floodRate, floodStatuses, thousands(r.answered), thousands(r.stored), cost)
		}
		fmt.Fprintf(b, "\nCost = how much slower the admins saved with the flood than without.")
		if s.counted {
			verdict := "they match"
			if s.answeredTotal != s.storedTotal {
				verdict = "**they do not match**"
			}
			fmt.Fprintf(b, " After the server stopped: answered %s, stored %s (%s).",
				thousands(s.answeredTotal), thousands(s.storedTotal), verdict)
		}
		fmt.Fprintln(b)
		for _, r := range s.saves {
			if r.res.errors > 0 {
				fmt.Fprintf(b, "\nFirst error with %d admins (flood: %v): %s\n", r.admins, r.flood, r.res.firstErr)
			}
		}
	}
	fmt.Fprintf(b, "\nServer log: %d ERROR lines.\n", s.logErrors)
	if len(s.firstLogErrors) > 0 {
		fmt.Fprintf(b, "\n```\n%s\n```\n", strings.Join(s.firstLogErrors, "\n"))
	}
}

func errorCell(r *result) string {
	if r.errors == 0 {
		return "0"
	}
	return fmt.Sprintf("**%s**", thousands(r.errors))
}

// statuses is a histogram "303: 1,200 · 400: 1,199"; 0 is "no answer".
func statuses(h map[int]int) string {
	var parts []string
	for _, s := range slices.Sorted(maps.Keys(h)) {
		name := fmt.Sprint(s)
		if s == 0 {
			name = "no answer"
		}
		parts = append(parts, fmt.Sprintf("%s: %s", name, thousands(h[s])))
	}
	return strings.Join(parts, " · ")
}

func rate(r float64) string { return thousands(int(r + 0.5)) }

func ratio(r, base float64) string {
	if base <= 0 {
		return "–"
	}
	if r/base < 0.01 {
		return fmt.Sprintf("%.4f", r/base)
	}
	return fmt.Sprintf("%.3f", r/base)
}

// ms formats a latency in milliseconds with about three significant digits.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func perRequest(cpu time.Duration, n int) string {
	if cpu < 0 || n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f µs", float64(cpu)/float64(time.Microsecond)/float64(n))
}

func mib(b int64) string {
	if b <= 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

// thousands writes n with comma separators: 12,345.
func thousands(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// cpuModel is the processor's name from /proc/cpuinfo, if there is one.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown model"
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown model"
}
