package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob/fsblob"
	"github.com/ferrydrive/ferry/fetch"
	"github.com/ferrydrive/ferry/graph"
	"github.com/ferrydrive/ferry/jobs"
	"github.com/ferrydrive/ferry/metrics"
	"github.com/ferrydrive/ferry/sqlstore"
	"github.com/ferrydrive/ferry/web"
)

// firstUser is the user created, with a printed token, on first start.
const firstUser = "me"

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("ferry serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	serveFlags(fs, &cfg)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ferry serve [flags]\n\nEvery flag --name can also be set with the environment variable FERRY_NAME\n(dashes become underscores); a flag on the command line wins.\n\nflags:")
		fs.PrintDefaults()
	}
	rest, err := parseFlags(fs, args, getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if len(rest) > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", rest[0])}
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err.Error()}
	}
	cfg.S3AccessKey, cfg.S3SecretKey, cfg.S3Session = getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"), getenv("AWS_SESSION_TOKEN")
	return serve(ctx, cfg, newLogger(cfg, stderr), stdout)
}

// openStore opens the metadata database named by --db, or the SQLite file
// inside --data.
func openStore(ctx context.Context, dataDir, dsn string) (*sqlstore.Store, error) {
	if dsn == "" {
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("create data folder: %w", err)
		}
		dsn = filepath.Join(dataDir, "ferry.db")
	}
	return sqlstore.Open(ctx, dsn)
}

func serve(ctx context.Context, cfg Config, log *slog.Logger, stdout io.Writer) error {
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("create data folder: %w", err)
	}
	var cert *tls.Certificate
	if cfg.TLSCert != "" {
		c, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
		cert = &c
	}
	store, err := openStore(ctx, cfg.Data, cfg.DB)
	if err != nil {
		return err
	}
	defer store.Close()
	// Metrics exist only with their listener: a nil *metrics.Metrics
	// records nothing.
	var m *metrics.Metrics
	if cfg.MetricsListen != "" {
		m = metrics.New(store)
	}
	store.CountRetries(m)
	blobs, err := openBlobs(ctx, cfg)
	if err != nil {
		return err
	}
	// Local blobs keep --min-free-space on the data disk (nil otherwise:
	// a nil *fsblob.Space must not become a non-nil interface).
	var space ferry.DiskSpace
	if fs, ok := blobs.(*fsblob.Store); ok {
		sp := fs.KeepFree(cfg.MinFreeSpace, nil)
		if cfg.DB == "" {
			freeFullDisk(ctx, log, store, fs, sp)
		}
		space = sp
	}

	n, err := store.UserCount(ctx)
	if err != nil {
		return err
	}
	if n == 0 {
		u, _, err := store.EnsureUser(ctx, firstUser, cfg.Quota)
		if err != nil {
			return err
		}
		tok, err := store.CreateToken(ctx, u.ID, ferry.Scopes{ferry.ScopeReadWrite})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "ferry: created user %q; token: %s\n", firstUser, tok)
	}

	key, err := store.Secret(ctx, "download-url", 32)
	if err != nil {
		return err
	}
	fetcher := fetch.New(fetch.Options{
		Allow:          cfg.FetchAllow,
		ConnectTimeout: cfg.ConnectTimeout,
		HeaderTimeout:  cfg.HeaderTimeout,
		IdleTimeout:    cfg.IdleTimeout,
		HostConns:      cfg.FetchHostConns,
		Refusals:       m,
	})
	defer fetcher.Close()
	// On S3 a part is what a takeover resumes from: an import checkpoints
	// at least twice per part's worth of bytes, so that a node that dies
	// loses less than a part, however fast the origin (a checkpoint's
	// Sync uploads what arrived since the last one).
	var checkpointBytes int64
	if p, ok := blobs.(interface{ PartSize() int64 }); ok {
		checkpointBytes = p.PartSize() / 2
	}
	queue, err := jobs.New(ctx, jobs.Config{
		Workers:         cfg.Workers,
		PerUserRunning:  cfg.PerUserImports,
		Rate:            rate.Limit(cfg.ImportRate),
		Burst:           cfg.ImportBurst,
		MaxFileSize:     cfg.MaxImportSize,
		Retention:       cfg.MonitorRetention,
		MaxDuration:     cfg.MaxDuration,
		Connections:     cfg.FetchConns,
		CheckpointBytes: checkpointBytes,
		NodeID:          nodeID(cfg),
		Space:           space,
		Log:             log,
		Metrics:         m,
	}, store, blobs, fetcher)
	if err != nil {
		return err
	}

	closing := make(chan struct{})
	var public *url.URL
	if cfg.PublicURL != "" {
		public, _ = url.Parse(strings.TrimSuffix(cfg.PublicURL, "/")) // checked by Validate
	}
	handler := graph.NewHandler(graph.Config{
		PublicURL:       public,
		TrustedProxies:  cfg.TrustedProxies,
		MaxUploadSize:   cfg.MaxUploadSize,
		DownloadURLTTL:  cfg.DownloadURLTTL,
		SigningKey:      key,
		BodyIdleTimeout: cfg.BodyIdleTimeout,
		DeltaRetention:  cfg.DeltaRetention,
	}, graph.Deps{Log: log, Accounts: store, Items: store, Blobs: blobs, Jobs: queue, Sessions: store, Shares: store, Space: space, Metrics: m,
		Page: web.Handler(), Closing: closing, Durable: store.Durable})
	// Handlers must be done before the deferred store.Close, also when the
	// shutdown below runs out of time and closes their connections.
	var handlers sync.WaitGroup
	handler = tracked(&handlers, handler)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	ln = limitPerClient(ln, cfg.MaxConnsPerClient, m)
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Event streams never go idle: end them when shutdown begins, so that
	// Shutdown need not wait out its timeout.
	srv.RegisterOnShutdown(func() { close(closing) })
	scheme := "http"
	if cert != nil {
		scheme = "https"
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
	}
	var metricsLn net.Listener
	if m != nil {
		if metricsLn, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			ln.Close()
			return fmt.Errorf("metrics listener: %w", err)
		}
		fmt.Fprintf(stdout, "ferry: metrics on http://%s/metrics\n", metricsLn.Addr())
	}
	base := scheme + "://" + ln.Addr().String()
	fmt.Fprintf(stdout, "ferry: listening on %s  (API base %s/v1.0)\n", base, base)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Go(func() {
		var err error
		if cert != nil {
			err = srv.ServeTLS(ln, "", "") // HTTP/2 and HTTP/1.1, TLSConfig's certificate
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
			cancel()
		}
	})
	wg.Go(func() { pruneDelta(runCtx, log, store, cfg.DeltaRetention) })
	var metricsSrv *http.Server
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.Handler())
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		wg.Go(func() {
			if err := metricsSrv.Serve(metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics: %w", err)
				cancel()
			}
		})
	}
	wg.Go(func() {
		if err := queue.Run(runCtx); err != nil {
			errc <- fmt.Errorf("jobs: %w", err)
			cancel()
		}
	})

	<-runCtx.Done()
	log.Info("shutting down")
	shutCtx, done := context.WithTimeout(context.Background(), 15*time.Second)
	defer done()
	if err := srv.Shutdown(shutCtx); err != nil {
		srv.Close()
	}
	if metricsSrv != nil {
		metricsSrv.Close()
	}
	cancel()
	wg.Wait()
	handlers.Wait()
	close(errc)
	return <-errc // nil after a clean stop
}

// freeFullDisk lets a node come up on a disk that is below
// --min-free-space (filled before reservations existed, or by something
// else): SQLite cannot write on a full disk, and without writes nothing
// can be cancelled or deleted to free space. It removes the staging areas
// of unfinished imports, largest first, until the disk is above the floor
// again; those imports start over from their origins (and now wait for
// space, or fail with insufficientStorage, instead of filling the disk).
// Upload sessions' bytes are kept: only their clients have them. Whatever
// remains low is logged; the server comes up anyway, and writes wait or
// are refused until space is freed.
func freeFullDisk(ctx context.Context, log *slog.Logger, store *sqlstore.Store, blobs *fsblob.Store, space *fsblob.Space) {
	u, err := space.Usage()
	if err != nil || u.Room() > 0 {
		return
	}
	ids, err := store.ImportStaging(ctx)
	if err != nil {
		log.Error("the data disk is full; could not list imports to free space", "err", err)
		ids = nil
	}
	imports := map[string]bool{}
	for _, id := range ids {
		imports[id] = true
	}
	areas, err := blobs.ListStaging(ctx)
	if err != nil {
		log.Error("the data disk is full; could not list staging areas", "err", err)
	}
	slices.SortFunc(areas, func(a, b ferry.BlobInfo) int { return cmp.Compare(b.Size, a.Size) })
	for _, a := range areas {
		if !imports[a.ID] {
			continue
		}
		if err := blobs.RemoveStaging(ctx, a.ID); err != nil {
			log.Error("could not remove an import's staging area", "staging", a.ID, "err", err)
			continue
		}
		log.Warn("the data disk was full: removed the staged bytes of an unfinished import, which starts over", "staging", a.ID, "bytes", a.Size)
		if u, err = space.Usage(); err == nil && u.Room() > 0 {
			return
		}
	}
	log.Warn("the data disk is low on space: writes wait or are refused until some is freed (cancel imports, delete files, or lower --min-free-space)",
		"free", u.Free, "min_free", u.Floor)
}

// tracked counts running handlers in wg.
func tracked(wg *sync.WaitGroup, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		next.ServeHTTP(w, r)
	})
}

// nodeID names this node for reclaiming its own interrupted jobs at start:
// stable across restarts of the same server on the same data.
func nodeID(cfg Config) string {
	if cfg.NodeID != "" {
		return cfg.NodeID
	}
	host, _ := os.Hostname()
	where := cfg.DB
	if where == "" {
		where, _ = filepath.Abs(cfg.Data)
	}
	h := sha256.Sum256([]byte(host + "\x00" + where + "\x00" + cfg.Listen))
	return "ferry-" + host + "-" + hex.EncodeToString(h[:6])
}

// pruneDelta forgets recorded changes older than the delta retention (so
// that older tokens answer 410 resyncRequired) and abandoned delta
// listings, at start and then every ten minutes, until ctx is done.
func pruneDelta(ctx context.Context, log *slog.Logger, store *sqlstore.Store, retention time.Duration) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		if err := store.PruneDelta(ctx, time.Now().Add(-retention)); err != nil && ctx.Err() == nil {
			log.Warn("pruning the delta record failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
