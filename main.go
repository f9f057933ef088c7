// Command cartclass serves the cartclass dashboard: school IT admins list, search, create
// and edit Intune cart-to-class associations, kept in SQLite.
//
// main only wires the parts together: configuration, store, web server, shutdown.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
	// The IANA zone database inside the binary: CARTCLASS_TIMEZONE works on a machine or
	// container image without one.
	_ "time/tzdata"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/web"
	"github.com/cartclass/cartclass/web/devidp"
)

func main() {
	dev := flag.Bool("dev", false, "development mode: embedded defaults on loopback")
	version := flag.Bool("version", false, "print the version and the VCS revision it was built from, then exit")
	flag.Usage = func() {
		out := flag.CommandLine.Output()
		fmt.Fprintf(out, "Usage: cartclass [-dev | -version]\n       cartclass [-dev] backup FILE   (a consistent copy of the database, while cartclass runs)\n       cartclass [-dev] healthcheck   (exit 0 when the cartclass on CARTCLASS_ADDR answers /healthz)\n\nFlags:\n")
		flag.PrintDefaults()
		fmt.Fprintf(out, "\nConfiguration comes from the environment:\n\n")
		web.PrintVars(out)
	}
	flag.Parse()
	if flag.Arg(0) == "healthcheck" {
		if err := healthcheck(os.Getenv, *dev); err != nil {
			fmt.Fprintln(os.Stderr, "cartclass healthcheck:", err)
			os.Exit(1)
		}
		return
	}
	if flag.Arg(0) == "backup" {
		if err := backupCommand(flag.Args()[1:], *dev); err != nil {
			fmt.Fprintln(os.Stderr, "cartclass backup:", err)
			os.Exit(1)
		}
		return
	}
	if *version {
		bi, _ := debug.ReadBuildInfo()
		fmt.Println(versionLine(bi))
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Environ(), *dev, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cartclass:", err)
		os.Exit(1)
	}
}

// backupCommand is "cartclass backup FILE": a consistent copy of the database that
// CARTCLASS_DB names (the dev one with -dev) into FILE, which must not exist. It reads
// nothing else of the configuration, and migrates nothing, so it works beside any running
// cartclass.
func backupCommand(args []string, dev bool) error {
	if len(args) != 1 || strings.TrimSpace(args[0]) == "" {
		return errors.New("usage: cartclass backup FILE (FILE must not exist yet)")
	}
	db := web.Value(os.Getenv, "CARTCLASS_DB", dev)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := store.BackupFile(ctx, db, args[0]); err != nil {
		return err
	}
	fmt.Printf("backed up %s to %s\n", db, args[0])
	return nil
}

// healthcheck is "cartclass healthcheck", for a container's HEALTHCHECK (distroless
// images have no curl): it asks the cartclass listening on CARTCLASS_ADDR for /healthz and
// succeeds on 200.
func healthcheck(getenv func(string) string, dev bool) error {
	host, port, err := net.SplitHostPort(web.Value(getenv, "CARTCLASS_ADDR", dev))
	if err != nil {
		return fmt.Errorf("CARTCLASS_ADDR: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // listening on every interface: loopback is one of them
	}
	url := "http://" + net.JoinHostPort(host, port) + "/healthz"
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}

// runBackups writes a backup into cfg.BackupDir every cfg.BackupEvery, keeping the newest
// cfg.BackupKeep. The first is one period after start-up, not at it: a server that
// restarts in a loop must not rotate the good old backups away.
func runBackups(ctx context.Context, st *store.Store, cfg web.Config, log *slog.Logger) {
	t := time.NewTicker(cfg.BackupEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		path, removed, err := st.BackupInto(ctx, cfg.BackupDir, start, cfg.BackupKeep)
		if err != nil {
			if ctx.Err() == nil {
				log.Error("backup failed", "dir", cfg.BackupDir, "err", err)
			}
			continue
		}
		log.Info("backup written", "path", path, "removed_old", removed, "duration", time.Since(start))
	}
}

// versionLine is what -version prints: the module version, the VCS revision and time the
// binary was built from (and whether the tree had uncommitted changes), and Go's version,
// all from the build info Go embeds.
func versionLine(bi *debug.BuildInfo) string {
	if bi == nil {
		return "cartclass (no build information)"
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	line := "cartclass " + bi.Main.Version
	if rev := settings["vcs.revision"]; rev != "" {
		line += " revision " + rev
		if settings["vcs.modified"] == "true" {
			line += " (with uncommitted changes)"
		}
		if t := settings["vcs.time"]; t != "" {
			line += " of " + t
		}
	}
	return line + ", " + bi.GoVersion
}

// startDevIdP runs the built-in OpenID Connect provider on loopback and points cfg at it.
// It is a real provider: cartclass signs in through it exactly as through Entra ID. It
// listens on "localhost", a different site from cartclass's 127.0.0.1, as a real IdP is.
func startDevIdP(cfg *web.Config, log *slog.Logger) (*devidp.Provider, error) {
	secret := make([]byte, 24)
	rand.Read(secret)
	cfg.OIDCClientID, cfg.OIDCClientSecret = "cartclass-dev", hex.EncodeToString(secret)
	public := strings.TrimSuffix(cfg.PublicURL.String(), "/")
	idp, err := devidp.Start(devidp.Config{
		Issuer: "http://localhost:0",
		Clients: []devidp.Client{{
			ID: cfg.OIDCClientID, Secret: cfg.OIDCClientSecret,
			RedirectURIs:           []string{cfg.RedirectURL()},
			PostLogoutRedirectURIs: []string{public + "/signedout"},
		}},
		Users:  devidp.DefaultUsers(),
		Logger: log.With("component", "devidp"),
	})
	if err != nil {
		return nil, fmt.Errorf("dev identity provider: %w", err)
	}
	cfg.OIDCIssuer = idp.Issuer()
	return idp, nil
}

// startDevGraph runs the Graph emulator on loopback for -dev, keeping its objects in a file
// beside the database so restarts stay consistent, and returns its base URL.
func startDevGraph(dbPath string, log *slog.Logger) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("dev Graph emulator: %w", err)
	}
	emu := emulator.New(
		emulator.WithLogger(log.With("component", "graph-emulator")),
		emulator.WithStateFile(strings.TrimSuffix(dbPath, filepath.Ext(dbPath))+"-graph.json"),
	)
	srv := &http.Server{Handler: emu, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	stop := func() {
		srv.Close()
		if err := emu.Close(); err != nil { // writes the state still pending
			log.Error("dev Graph emulator state not saved", "err", err)
		}
	}
	return "http://" + ln.Addr().String() + emulator.BasePath, stop, nil
}

// run starts cartclass and blocks until ctx is done, then shuts down gracefully.
func run(ctx context.Context, environ []string, dev bool, stdout io.Writer) error {
	cfg, err := web.LoadEnv(environ, dev)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	// ctx ending (SIGTERM, SIGINT) starts the shutdown; what runs lives on base until the
	// shutdown has let it finish.
	base := context.WithoutCancel(ctx)

	if dev && cfg.OIDCIssuer == "" {
		idp, err := startDevIdP(&cfg, log)
		if err != nil {
			return err
		}
		defer idp.Close()
		fmt.Fprintf(stdout, "dev identity provider at %s: sign in as Dev Admin, Dev Viewer or Dev Nobody\n", idp.Issuer())
	}

	if dev && cfg.GraphURL == "" {
		url, stopEmu, err := startDevGraph(cfg.DBPath, log)
		if err != nil {
			return err
		}
		defer stopEmu()
		cfg.GraphURL = url
		fmt.Fprintf(stdout, "dev Graph emulator at %s (faults: POST %s/_emulator/faults)\n", url, strings.TrimSuffix(url, emulator.BasePath))
	}

	st, err := store.Open(base, cfg.DBPath)
	if err != nil {
		return err
	}
	defer st.Close()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	metrics := web.NewMetrics()
	gc, err := graph.New(cfg.GraphURL, graph.WithHTTPClient(&http.Client{
		Timeout: 60 * time.Second, Transport: metrics.GraphTransport(nil)}))
	if err != nil {
		return fmt.Errorf("CARTCLASS_GRAPH_URL: %w", err)
	}
	app, err := web.New(base, cfg, st, log, web.WithGraph(gc), web.WithMetrics(metrics))
	if err != nil {
		return err
	}
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("CARTCLASS_METRICS_ADDR: listen on %s: %w", cfg.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics.Handler())
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		go func() {
			if err := msrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener stopped", "addr", cfg.MetricsAddr, "err", err)
			}
		}()
		defer msrv.Close()
		fmt.Fprintf(stdout, "metrics at http://%s/metrics\n", mln.Addr())
	}
	pushCtx, stopPush := context.WithCancel(base)
	pushDone := make(chan struct{})
	go func() { defer close(pushDone); app.RunPusher(pushCtx) }()
	defer func() { stopPush(); <-pushDone }()
	go app.RunSessionCleanup(pushCtx, 10*time.Minute)
	if cfg.BackupDir != "" {
		go runBackups(pushCtx, st, cfg, log)
	}
	srv := &http.Server{
		Handler:           app,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "cartclass is running at %s/ (database %s)\n", cfg.PublicURL, cfg.DBPath)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown(base, cfg, log, srv, app, stopPush, pushDone)
	return nil
}

// shutdown stops taking requests, and lets the requests in flight and the changes being
// sent to Graph finish, for up to CARTCLASS_SHUTDOWN_TIMEOUT; then it cuts off what is
// left (the outbox keeps those changes for the next start) and says what it finished and
// what is still queued.
func shutdown(base context.Context, cfg web.Config, log *slog.Logger, srv *http.Server, app *web.Server, stopPush func(), pushDone <-chan struct{}) {
	started := time.Now()
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	ctx, cancel := context.WithTimeout(base, cfg.ShutdownTimeout)
	defer cancel()
	app.StopPusher()
	srvErr := srv.Shutdown(ctx)
	pushesCut := false
	select {
	case <-pushDone:
	case <-ctx.Done():
		pushesCut = true
		stopPush()
		<-pushDone
	}
	queued, err := app.QueueDepth(base)
	attrs := []any{"pushes_finished", app.PushesDrained(), "left_queued", queued, "duration", time.Since(started).Round(time.Millisecond)}
	if err != nil {
		attrs = append(attrs, "queue_err", err)
	}
	if srvErr != nil || pushesCut {
		log.Warn("stopped after the shutdown timeout: cut off what was still running", append(attrs,
			"requests_cut", srvErr != nil, "pushes_cut", pushesCut)...)
		srv.Close()
		return
	}
	log.Info("stopped", attrs...)
}
