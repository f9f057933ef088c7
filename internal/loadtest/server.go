package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// repoRoot is the directory of the main module's go.mod, or the working directory.
func repoRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if gomod := strings.TrimSpace(string(out)); err == nil && gomod != "" && gomod != os.DevNull {
		return filepath.Dir(gomod), nil
	}
	return os.Getwd()
}

// buildCartclass compiles the cartclass command in the source tree src into dir.
func buildCartclass(ctx context.Context, src, dir string) (string, error) {
	bin := filepath.Join(dir, "cartclass")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = src
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build in %s: %w", src, err)
	}
	return bin, nil
}

// freeAddr returns a loopback address with a port nobody listens on right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// process is a server this program started. It is stopped with stop, and dies with this
// program on Linux (see childAttr).
type process struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	err     error         // how it exited, once done is closed
	peakRSS atomic.Int64  // highest VmRSS sampled, in bytes
}

// start runs cmd, watching its exit and sampling its resident memory every 500 ms.
func start(name string, cmd *exec.Cmd) (*process, error) {
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			if rss, err := procStatus(cmd.Process.Pid, "VmRSS"); err == nil && rss > p.peakRSS.Load() {
				p.peakRSS.Store(rss)
			}
			select {
			case <-p.done:
				return
			case <-t.C:
			}
		}
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to shut down (SIGTERM) and kills it if it has not within 15 s.
func (p *process) stop() {
	if p.exited() {
		return
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.cmd.Process.Kill()
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		progress("%s did not stop within 15s: killing it", p.name)
		p.cmd.Process.Kill()
		<-p.done
	}
}

// lineWatcher is a process's stdout: it hands each line to match until match accepts one,
// then closes ready and discards the rest.
type lineWatcher struct {
	match func(line string) bool
	ready chan struct{}
	buf   []byte
	seen  bool
}

func watchLines(match func(line string) bool) *lineWatcher {
	return &lineWatcher{match: match, ready: make(chan struct{})}
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	if w.seen {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		if w.match(line) {
			w.seen, w.buf = true, nil
			close(w.ready)
			return len(p), nil
		}
	}
}

// waitReady waits until the watcher has seen its line, the process exits, ctx ends or
// 60 s pass.
func waitReady(ctx context.Context, p *process, w *lineWatcher) error {
	select {
	case <-w.ready:
		return nil
	case <-p.done:
		return fmt.Errorf("%s exited before it was ready: %v", p.name, p.err)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(60 * time.Second):
		return fmt.Errorf("%s was not ready within 60s", p.name)
	}
}

// cartclass is a running cartclass server in -dev mode.
type cartclass struct {
	*process
	base      string // http://127.0.0.1:<port>, no trailing slash
	issuer    string // the dev identity provider
	stderrLog string // where its log goes
}

// startCartclass runs bin -dev on the database db, logging at warn level into logPath.
// Every CARTCLASS_ variable of this environment is dropped so that only the dev defaults
// (all on loopback) apply.
func startCartclass(ctx context.Context, bin, db, logPath string) (*cartclass, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-dev")
	cmd.Dir = filepath.Dir(db)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CARTCLASS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// No reads of Intune: the seeded associations are not in the dev emulator, and a read
	// would (rightly) confirm each gone with a GET, beside the traffic this measures.
	cmd.Env = append(cmd.Env, "CARTCLASS_DB="+db, "CARTCLASS_ADDR="+addr, "CARTCLASS_LOG_LEVEL=warn",
		"CARTCLASS_GRAPH_SYNC_EVERY=0")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd.Stderr = logFile
	c := &cartclass{stderrLog: logPath}
	out := watchLines(func(line string) bool {
		if rest, ok := strings.CutPrefix(line, "dev identity provider at "); ok {
			c.issuer, _, _ = strings.Cut(rest, ": ")
		}
		if rest, ok := strings.CutPrefix(line, "cartclass is running at "); ok {
			u, _, _ := strings.Cut(rest, " ")
			c.base = strings.TrimSuffix(u, "/")
			return true
		}
		return false
	})
	cmd.Stdout = out
	p, err := start("cartclass", cmd)
	if err != nil {
		return nil, err
	}
	c.process = p
	err = waitReady(ctx, p, out)
	if err == nil {
		err = checkLoopback(c.base, c.issuer)
	}
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("%w\n%s", err, tail(logPath, 20))
	}
	return c, nil
}

// checkLoopback refuses any URL whose host is not on loopback.
func checkLoopback(urls ...string) error {
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return fmt.Errorf("unexpected URL %q from cartclass", raw)
		}
		if h := u.Hostname(); h != "localhost" && !net.ParseIP(h).IsLoopback() {
			return fmt.Errorf("%s is not on loopback: refusing to send traffic there", raw)
		}
	}
	return nil
}

// logErrors counts the ERROR lines in the server's log and returns the first few.
func (c *cartclass) logErrors() (int, []string) {
	b, err := os.ReadFile(c.stderrLog)
	if err != nil {
		return -1, []string{err.Error()}
	}
	var n int
	var first []string
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, "level=ERROR") {
			n++
			if len(first) < 5 {
				first = append(first, strings.TrimSpace(line))
			}
		}
	}
	return n, first
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// startBare runs this program again as the reference server (see serveBare).
func startBare(ctx context.Context) (*process, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(self, "-bare-server", addr)
	cmd.Stderr = os.Stderr
	out := watchLines(func(line string) bool { return strings.HasPrefix(line, "listening") })
	cmd.Stdout = out
	p, err := start("bare server", cmd)
	if err != nil {
		return nil, "", err
	}
	if err := waitReady(ctx, p, out); err != nil {
		p.stop()
		return nil, "", err
	}
	return p, "http://" + addr, nil
}

// barePageSize is the size of the reference server's page: about what cartclass's list
// page weighs.
const barePageSize = 20 << 10

// serveBare is the reference server: plain net/http answering every GET / with the same
// 20 KB HTML page. It runs in a process of its own so that its CPU competes with the load
// generator as cartclass's does.
func serveBare(addr string) error {
	page := barePage()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return err
	}
	fmt.Println("listening on", ln.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// barePage is an HTML table of made-up rows, padded to exactly barePageSize bytes.
func barePage() []byte {
	var b bytes.Buffer
	b.WriteString("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Reference</title></head>\n<body><table>\n")
	const foot = "</table></body></html>\n"
	for i := 1; ; i++ {
		row := fmt.Sprintf("<tr><td><a href=\"/associations/%d\">Science iPads %d</a></td><td>cart-%d</td><td>room-%d</td><td>Synced</td></tr>\n", i, i, i, 100+i)
		if b.Len()+len(row)+len(foot) > barePageSize {
			break
		}
		b.WriteString(row)
	}
	b.WriteString(strings.Repeat(" ", barePageSize-b.Len()-len(foot)))
	b.WriteString(foot)
	return b.Bytes()
}

// procStatus reads a "kB" field of /proc/<pid>/status (VmRSS, VmHWM) in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// cpuTime is the CPU time (user + system) the process has used so far, from
// /proc/<pid>/stat, in clock ticks of 10 ms (USER_HZ is 100 on Linux).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after it are fixed.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}
