package main

// Continuous replication with Litestream (github.com/benbjohnson/litestream), as the README
// documents it: a real `litestream replicate` process beside cartclass, a file replica,
// and `litestream restore` into an empty folder. .ci/run installs the pinned release and
// names it in CARTCLASSTEST_LITESTREAM.

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/cartclass/cartclass/web/devidp"
)

// litestreamVersion is the release the README and .ci/run install.
const litestreamVersion = "v0.5.18"

// litestreamBinary is the litestream to test with: CARTCLASSTEST_LITESTREAM, else
// litestream on PATH. Without one the test is skipped, saying how to install it, unless
// CI is set or CARTCLASSTEST_LITESTREAM names a file that is not there: CI must not pass
// by skipping.
func litestreamBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CARTCLASSTEST_LITESTREAM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CARTCLASSTEST_LITESTREAM=%s: %v", p, err)
		}
		return p
	}
	if p, err := exec.LookPath("litestream"); err == nil {
		return p
	}
	msg := "no litestream: set CARTCLASSTEST_LITESTREAM to its path, or put it on PATH; install it with " +
		"`go install github.com/benbjohnson/litestream/cmd/litestream@" + litestreamVersion + "` (about 2 minutes)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI is set: this test must run there)")
	}
	t.Skip(msg)
	return ""
}

// litestreamConfig is the configuration the test replicates with: deploy/litestream.yml's
// file replica, checked for new WAL frames and shipped every 100 ms (the defaults are 1 s)
// so that the test need not wait long.
const litestreamConfig = `dbs:
  - path: %s
    monitor-interval: 100ms
    replica:
      type: file
      path: %s
      sync-interval: 100ms
`

// TestLitestreamReplicaRestores replicates cartclass's database with Litestream while an
// admin saves a burst (concurrent creates and edits; Intune refuses pushes half-way, so
// later changes stay queued), and checks that nothing answered is lost: a restore made
// while both still run catches up with every answered save within seconds, and after
// cartclass and then Litestream stop, `litestream restore` into an empty folder gives a
// file that passes integrity_check and holds exactly what cartclass left (every
// association, history entry, queued change, session), on which cartclass starts and lists
// every saved association. Replication must not disturb cartclass: every save is answered
// as saved (no "database is locked").
func TestLitestreamReplicaRestores(t *testing.T) {
	bin := litestreamBinary(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "live", "cartclass.db")
	replica := filepath.Join(dir, "replica")
	config := filepath.Join(dir, "litestream.yml")
	if err := os.WriteFile(config, fmt.Appendf(nil, litestreamConfig, db, replica), 0o600); err != nil {
		t.Fatal(err)
	}

	a := startServer(t, db) // creates and migrates the database
	ls := startLitestream(t, bin, "replicate", "-config", config)
	waitFor(t, 10*time.Second, "Litestream's first snapshot in the replica", func() bool {
		snapshots, _ := filepath.Glob(filepath.Join(replica, "ltx", "*", "*.ltx"))
		return len(snapshots) > 0
	})

	admin := signIn(t, a, devidp.SubjectAdmin)
	// A viewer reads the list all along.
	viewer := signIn(t, a, devidp.SubjectViewer)
	stopReading, readerDone := make(chan struct{}), make(chan int, 1)
	var readers int
	stopReader := sync.OnceFunc(func() { close(stopReading); readers = <-readerDone })
	t.Cleanup(stopReader) // before cartclass stops, should the test end early
	go func() {
		n := 0
		defer func() { readerDone <- n }()
		for {
			select {
			case <-stopReading:
				return
			default:
			}
			res, _, err := send(viewer.http, http.MethodGet, a.URL+"/associations?q=cart", nil, "")
			if err == nil && res.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s", res.Status)
			}
			if err != nil {
				t.Errorf("GET /associations while replicating: %v", err)
				return
			}
			n++
		}
	}()
	var log saveLog
	burst(t, admin, &log, 8, 160, 60, func() {
		// From the next create on, Intune answers 403: the queue pauses, and the changes
		// after stay queued.
		a.injectFault(t, emulator.Fault{Method: http.MethodPost, Status: http.StatusForbidden, Count: 1})
	})
	stopReader()
	t.Logf("%d saves and %d list pages answered while Litestream replicated", len(log.saves), readers)
	answered := log.latest()

	// The server could die now: within seconds the replica holds every answered save.
	start := time.Now()
	for n := 0; ; n++ {
		out := filepath.Join(dir, "while-running", fmt.Sprint(n), "cartclass.db")
		missing := []string{"(the restore failed)"}
		if ls.run(t, "restore", "-config", config, "-o", out, db) == nil {
			missing = missingSaves(readDB(t, out), answered)
		}
		if len(missing) == 0 {
			t.Logf("a restore %s after the last save holds all %d answered saves", time.Since(start).Round(time.Millisecond), len(log.saves))
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("10 s after the last save, a restore still lacks %d answered saves, e.g. %v", len(missing), missing[:min(3, len(missing))])
		}
		time.Sleep(200 * time.Millisecond)
	}

	// cartclass stops first (its last writes, the shutdown's, are replicated too), then
	// Litestream, which ships what is left on SIGTERM.
	a.stop(t)
	ls.stop(t)
	live := readDB(t, db)
	if len(live.outbox) == 0 || len(live.outbox) == len(live.assocs) {
		t.Fatalf("%d of %d associations queued for Intune at the end; the test wants some queued and some sent", len(live.outbox), len(live.assocs))
	}

	restoredDir := filepath.Join(dir, "restored")
	if err := os.Mkdir(restoredDir, 0o700); err != nil { // empty
		t.Fatal(err)
	}
	restored := filepath.Join(restoredDir, "cartclass.db")
	if err := ls.run(t, "restore", "-config", config, "-integrity-check", "full", "-o", restored, db); err != nil {
		t.Fatalf("litestream restore: %v", err)
	}
	checkIntegrity(t, restored)
	got := readDB(t, restored)
	if missing := missingSaves(got, answered); len(missing) > 0 {
		t.Errorf("the restore lacks %d answered saves, e.g. %v", len(missing), missing[:min(3, len(missing))])
	}
	got.checkWhole(t, log.saves)
	if n := countValues(got.history); n != len(log.saves) {
		t.Errorf("the restore holds %d history entries; %d saves were answered", n, len(log.saves))
	}
	for name, rows := range live.tables {
		if !slices.Equal(got.tables[name], rows) {
			t.Errorf("table %s: the restore holds %d rows, cartclass left %d, and they differ", name, len(got.tables[name]), len(rows))
		}
	}
	for name := range got.tables {
		if _, ok := live.tables[name]; !ok {
			t.Errorf("the restore has a table %s that cartclass's database has not", name)
		}
	}
	t.Logf("restored %d associations (%d queued for Intune) and %d history entries; compared %d tables with what cartclass left",
		len(got.assocs), len(got.outbox), countValues(got.history), len(live.tables))

	// cartclass runs on the restored file; Intune (the emulator's state file) kept its
	// objects, as Intune would.
	copyFile(t, filepath.Join(filepath.Dir(db), "cartclass-graph.json"), filepath.Join(restoredDir, "cartclass-graph.json"), 0o600)
	b := startServer(t, restored)
	if fi, err := os.Stat(restored); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("restored database mode %v; want 0600 once cartclass has opened it", fi.Mode().Perm())
	}
	signIn(t, b, devidp.SubjectAdmin).checkListed(t, got.assocs)
}

// missingSaves is the answered saves (the latest of each association) that st lacks, or
// holds at an older revision or with other values.
func missingSaves(st dbState, answered map[int64]save) []string {
	var missing []string
	for id, s := range answered {
		if a, ok := st.assocs[id]; !ok || a.Revision != s.Revision || !a.Fields.Equal(s.Fields) {
			missing = append(missing, fmt.Sprintf("%s (id %d) revision %d", s.Fields.DisplayName, id, s.Revision))
		}
	}
	slices.Sort(missing)
	return missing
}

func countValues(m map[int64][]int64) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}

// litestream is a running `litestream replicate`, whose output goes to the test log if
// the test fails.
type litestream struct {
	bin    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when it has exited, with err set
	err    error
	out    *syncBuffer
}

func startLitestream(t *testing.T, bin string, args ...string) *litestream {
	t.Helper()
	ls := &litestream{bin: bin, out: &syncBuffer{}, exited: make(chan struct{})}
	ls.cmd = exec.Command(bin, args...)
	ls.cmd.Stdout, ls.cmd.Stderr = ls.out, ls.out
	if err := ls.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { ls.err = ls.cmd.Wait(); close(ls.exited) }()
	t.Cleanup(func() {
		select {
		case <-ls.exited:
		default:
			ls.cmd.Process.Kill()
			<-ls.exited
		}
		if t.Failed() {
			t.Logf("litestream %v:\n%s", args, ls.out)
		}
	})
	return ls
}

// stop sends SIGTERM, on which Litestream ships what it has not yet, and waits for it to
// exit; it must exit 0.
func (ls *litestream) stop(t *testing.T) {
	t.Helper()
	if err := ls.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ls.exited:
		if ls.err != nil {
			t.Fatalf("litestream replicate exited with %v", ls.err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("litestream replicate did not exit within 40 s of SIGTERM")
	}
}

// run runs another litestream command to completion, its output going to the test log
// if it fails.
func (ls *litestream) run(t *testing.T, args ...string) error {
	t.Helper()
	out, err := exec.Command(ls.bin, args...).CombinedOutput()
	if err != nil {
		t.Logf("litestream %v: %v\n%s", args, err, out)
	}
	return err
}

// waitFor polls cond every 50 ms until it holds, or fails the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's two output streams.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
