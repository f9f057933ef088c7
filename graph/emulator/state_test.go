package emulator_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/graph/emulator"
)

func TestStateIsWrittenBehind(t *testing.T) {
	path := filepath.Join(t.TempDir(), "graph.json")
	em, srv := start(t, emulator.WithStateFile(path))
	for i := range 50 {
		if r := call(t, srv, "POST", collection, fmt.Sprintf(`{"displayName":"cart %d"}`, i)); r.status != 201 {
			t.Fatalf("POST: %d", r.status)
		}
	}
	want := em.Objects()
	// Without Flush or Close, the flusher writes the state soon after.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got := reload(t, path); reflect.DeepEqual(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the state was not written within 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v %v, want mode 0600", fi, err)
	}

	// Flush writes at once.
	a := em.PutObject(graph.Association{DisplayName: "flushed"})
	if err := em.Flush(); err != nil {
		t.Fatal(err)
	}
	got := reload(t, path)
	if len(got) != 51 || got[50].ID != a.ID {
		t.Errorf("after Flush the file holds %d objects, want 51 ending with %s", len(got), a.ID)
	}
}

func TestSaveFailureDoesNotFailRequests(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sub")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "graph.json")
	em, srv := start(t, emulator.WithStateFile(path))
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	// The in-memory state is the truth for requests.
	r := call(t, srv, "POST", collection, validBody)
	if r.status != 201 {
		t.Fatalf("POST with an unwritable state file: %d %s", r.status, r.raw)
	}
	if g := call(t, srv, "GET", collection+"/"+r.json["id"].(string), ""); g.status != 200 {
		t.Errorf("GET: %d", g.status)
	}
	if err := em.Flush(); err == nil {
		t.Error("Flush into a missing directory succeeded")
	}
	// Once the directory is back, what failed to save is saved.
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := em.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := reload(t, path); !reflect.DeepEqual(got, em.Objects()) || len(got) != 1 {
		t.Errorf("reloaded %+v, want %+v", got, em.Objects())
	}
}

func TestCloseAndFlushWithoutStateFile(t *testing.T) {
	em := emulator.New()
	em.PutObject(graph.Association{DisplayName: "x"})
	if err := em.Flush(); err != nil {
		t.Errorf("Flush: %v", err)
	}
	for range 2 {
		if err := em.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	if len(em.Objects()) != 1 {
		t.Error("Close forgot the objects")
	}
}

func TestConcurrentWritesAndFlushes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "graph.json")
	em, srv := start(t, emulator.WithStateFile(path))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 25 {
				if r := call(t, srv, "POST", collection, fmt.Sprintf(`{"displayName":"w%d %d"}`, w, i)); r.status != 201 {
					t.Errorf("POST: %d", r.status)
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 25 {
			a := em.PutObject(graph.Association{DisplayName: fmt.Sprint("ext ", i)})
			if _, err := em.ChangeObject(a.ID, graph.Patch{Description: ptr("changed")}); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Go(func() {
		for range 20 {
			if err := em.Flush(); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if err := em.Close(); err != nil {
		t.Fatal(err)
	}
	want := em.Objects()
	if len(want) != 125 {
		t.Errorf("%d objects, want 125", len(want))
	}
	if got := reload(t, path); !reflect.DeepEqual(got, want) {
		t.Errorf("reloaded %d objects, not the %d served", len(got), len(want))
	}
}

// reload reads the state file as a restarted emulator would.
func reload(t *testing.T, path string) []graph.Association {
	t.Helper()
	em := emulator.New(emulator.WithStateFile(path))
	defer em.Close()
	return em.Objects()
}

func TestStateFileWithDuplicatesIsMovedAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "graph.json")
	const obj = `{"seq":1,"object":{"id":"A1","displayName":"x"}}`
	if err := os.WriteFile(path, []byte(`{"seq":2,"objects":[`+obj+`,`+strings.Replace(obj, `"A1"`, `"a1"`, 1)+`]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := reload(t, path); len(got) != 0 {
		t.Errorf("loaded %+v from a file with one id twice", got)
	}
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 1 {
		t.Errorf("file not moved aside: %v", m)
	}
}
