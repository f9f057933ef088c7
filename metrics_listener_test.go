package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freeAddr is a loopback address nothing listens on (for a moment).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestMetricsOnTheirOwnListener runs cartclass as main does with CARTCLASS_METRICS_ADDR:
// /metrics answers there and never on the public port, and `cartclass healthcheck`
// reaches /healthz.
func TestMetricsOnTheirOwnListener(t *testing.T) {
	addr, maddr := freeAddr(t), freeAddr(t)
	environ := []string{
		"CARTCLASS_ADDR=" + addr, "CARTCLASS_METRICS_ADDR=" + maddr,
		"CARTCLASS_DB=" + filepath.Join(t.TempDir(), "cartclass.db"),
		"CARTCLASS_LOG_LEVEL=error", "CARTCLASS_SHUTDOWN_TIMEOUT=5s",
	}
	ctx, cancel := context.WithCancel(context.Background())
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() { err := run(ctx, environ, true, w); w.Close(); done <- err }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("cartclass did not stop")
		}
	})
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var metricsLine bool
	for running := false; !running; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("cartclass stopped before serving: %v", <-done)
			}
			metricsLine = metricsLine || l == "metrics at http://"+maddr+"/metrics"
			running = strings.HasPrefix(l, "cartclass is running at ")
		case <-time.After(20 * time.Second):
			t.Fatal("cartclass did not start")
		}
	}
	go func() {
		for range lines {
		}
	}()
	if !metricsLine {
		t.Error(`start-up did not print "metrics at http://` + maddr + `/metrics"`)
	}

	get := func(url string) (int, string) {
		t.Helper()
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if status, body := get("http://" + maddr + "/metrics"); status != 200 || !strings.Contains(body, "cartclass_build_info{") || !strings.Contains(body, "cartclass_outbox_depth 0") {
		t.Errorf("metrics listener: %d %.300s", status, body)
	}
	if status, body := get("http://" + addr + "/metrics"); status != 404 || strings.Contains(body, "cartclass_") {
		t.Errorf("the public port answers /metrics: %d %.200s", status, body)
	}
	if status, _ := get("http://" + maddr + "/associations"); status != 404 {
		t.Errorf("the metrics listener serves pages: %d", status)
	}

	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if err := healthcheck(env(map[string]string{"CARTCLASS_ADDR": addr}), false); err != nil {
		t.Errorf("healthcheck of a running cartclass: %v", err)
	}
	_, port, _ := net.SplitHostPort(addr)
	if err := healthcheck(env(map[string]string{"CARTCLASS_ADDR": ":" + port}), false); err != nil {
		t.Errorf("healthcheck with CARTCLASS_ADDR=:%s (every interface): %v", port, err)
	}
	if err := healthcheck(env(map[string]string{"CARTCLASS_ADDR": maddr}), false); err == nil || !strings.Contains(err.Error(), "404 Not Found") {
		t.Errorf("healthcheck of something that is not cartclass: %v, want 404 named", err)
	}
	if err := healthcheck(env(map[string]string{"CARTCLASS_ADDR": freeAddr(t)}), false); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("healthcheck with nothing listening: %v", err)
	}
}
