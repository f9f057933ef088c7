package push_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/cartclass/cartclass/push"
	"github.com/cartclass/cartclass/store"
	_ "modernc.org/sqlite"
)

// The crash test re-runs this test binary as a child process (TestCrashChild) that opens
// the store file and pushes to the emulator, which lives in the parent so that it survives
// the child's SIGKILL.
const (
	envChild = "CARTCLASSTEST_CRASH_CHILD" // "burst" or "drain"
	envDB    = "CARTCLASSTEST_CRASH_DB"
	envGraph = "CARTCLASSTEST_CRASH_GRAPH"
)

// childLease is short so that the restarted child takes over the dead one's leases soon.
const childLease = 2 * time.Second

// TestCrashChild is the child process of TestCrashRecovery; it does nothing otherwise.
//
// burst: run a worker and save a burst of creates and edits, printing "saved <id> <rev>"
// for every answered save, then wait to be killed. drain: run a worker until the queue
// is empty, then print "drained".
func TestCrashChild(t *testing.T) {
	mode := os.Getenv(envChild)
	if mode == "" {
		t.Skip("child process of TestCrashRecovery")
	}
	ctx := context.Background()
	st, err := store.Open(ctx, os.Getenv(envDB))
	if err != nil {
		t.Fatal(err)
	}
	gc, err := graph.New(os.Getenv(envGraph), graph.WithTokenSource(appToken))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	w := push.New(st, gc, appTokens{appToken}, push.WithLease(childLease), push.WithLogger(log),
		push.WithBackoff(10*time.Millisecond, 200*time.Millisecond), push.WithWritesPer20s(0))
	go w.Run(ctx)

	if mode == "drain" {
		for {
			s, err := w.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if s.Depth == 0 {
				fmt.Println("drained")
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	var ids []int64
	for i := 0; ; i++ {
		var a store.Association
		if i%3 == 0 {
			a, err = st.CreateAssociation(ctx, crashFields(fmt.Sprint("crash-", i), 1), store.Actor{Subject: "sub-1"})
			if err == nil {
				ids = append(ids, a.ID)
			}
		} else {
			id := ids[i%len(ids)]
			cur, gerr := st.GetAssociation(ctx, id)
			if gerr != nil {
				t.Fatal(gerr)
			}
			a, err = st.UpdateAssociation(ctx, id, cur.Revision, crashFields(cur.DisplayName, cur.Revision+1), store.Actor{Subject: "sub-1"})
		}
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("saved %d %d\n", a.ID, a.Revision)
		w.Kick()
		time.Sleep(2 * time.Millisecond)
	}
}

// crashFields are the fields of revision rev: the description names it, so the final
// state can be checked against the revision.
func crashFields(name string, rev int64) store.Fields {
	return store.Fields{DisplayName: name, Description: fmt.Sprintf("rev %d", rev), Version: int32(rev),
		DeviceCartIDs: []string{name + "-cart"}, ClassroomIDs: []string{fmt.Sprintf("room-%d", rev%4)}}
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	emu := emulator.New()
	emu.SetLatency(15 * time.Millisecond)
	emu.Inject(emulator.Fault{Status: http.StatusServiceUnavailable, Count: 5})
	emu.Inject(emulator.Fault{Method: http.MethodPost, DropAfterApply: true, Count: 6})
	emu.Inject(emulator.Fault{Method: http.MethodPatch, DropAfterApply: true, Count: 4})
	emu.Inject(emulator.Fault{Method: http.MethodPost, Latency: 300 * time.Millisecond, Count: 5})
	srv := httptest.NewServer(emu)
	defer srv.Close()
	dbPath := filepath.Join(t.TempDir(), "crash.db")

	child := func(ctx context.Context, mode string) (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), envChild+"="+mode, envDB+"="+dbPath, envGraph+"="+srv.URL+emulator.BasePath)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		return cmd, &stderr
	}

	// Burst, killed mid-way.
	cmd, stderr := child(t.Context(), "burst")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	answered := map[int64]int64{} // id → highest answered revision
	sc := bufio.NewScanner(out)
	lines := 0
	for sc.Scan() && lines < 90 {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "saved" {
			continue
		}
		id, _ := strconv.ParseInt(f[1], 10, 64)
		rev, _ := strconv.ParseInt(f[2], 10, 64)
		answered[id] = max(answered[id], rev)
		lines++
	}
	if lines < 90 {
		t.Fatalf("burst child ended after %d saves: %v\n%s", lines, cmd.Wait(), stderr)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()

	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var check string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check after SIGKILL = %q, %v", check, err)
	}
	var depth, leased, sent int
	if err := db.QueryRow(`SELECT count(*), count(lease_owner), count(create_sent_at) FROM outbox`).Scan(&depth, &leased, &sent); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed after %d answered saves of %d associations: %d queued, %d leased (in flight), %d with a POST of unknown outcome; %d requests seen by Graph",
		lines, len(answered), depth, leased, sent, len(emu.Requests()))

	// Restart: a child that only drains the queue, meeting a few more lost answers.
	emu.Inject(emulator.Fault{Method: http.MethodPost, DropAfterApply: true, Count: 2})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd, stderr = child(ctx, "drain")
	drainOut, err := cmd.Output()
	if err != nil || !strings.Contains(string(drainOut), "drained") {
		t.Fatalf("drain child: %v\n%s\n%s", err, drainOut, stderr)
	}

	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check after drain = %q, %v", check, err)
	}
	st, err := store.Open(t.Context(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for id, rev := range answered {
		a, err := st.GetAssociation(t.Context(), id)
		if err != nil {
			t.Fatalf("answered save of %d lost: %v", id, err)
		}
		if a.Revision < rev || !a.Fields.Equal(crashFields(a.DisplayName, a.Revision)) {
			t.Fatalf("association %d at revision %d with %+v; answered revision %d", id, a.Revision, a.Fields, rev)
		}
	}
	page, err := st.ListAssociations(t.Context(), store.ListFilter{PerPage: 10000})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, st: st, emu: emu}
	var ids []int64
	for _, a := range page.Items {
		ids = append(ids, a.ID)
	}
	h.assertInGraph(ids...)
	t.Logf("%d associations, each exactly once in Graph; %d requests in all", len(ids), len(emu.Requests()))
}
