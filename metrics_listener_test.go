package main

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
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
	maddr := freeAddr(t)
	a := startServer(t, filepath.Join(t.TempDir(), "cartclass.db"), map[string]string{"CARTCLASS_METRICS_ADDR": maddr})
	addr := strings.TrimPrefix(a.URL, "http://")

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
	if status, body := get(a.URL + "/metrics"); status != 404 || strings.Contains(body, "cartclass_") {
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
