package main

import (
	"context"
	"crypto/sha256"
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
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob/fsblob"
	"github.com/ferrydrive/ferry/fetch"
	"github.com/ferrydrive/ferry/graph"
	"github.com/ferrydrive/ferry/jobs"
	"github.com/ferrydrive/ferry/sqlstore"
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
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return serve(ctx, cfg, log, stdout)
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
	store, err := openStore(ctx, cfg.Data, cfg.DB)
	if err != nil {
		return err
	}
	defer store.Close()
	blobs, err := fsblob.New(filepath.Join(cfg.Data, "blobs"))
	if err != nil {
		return err
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
	})
	defer fetcher.Close()
	queue, err := jobs.New(ctx, jobs.Config{
		Workers:        cfg.Workers,
		PerUserRunning: cfg.PerUserImports,
		Rate:           rate.Limit(cfg.ImportRate),
		Burst:          cfg.ImportBurst,
		MaxFileSize:    cfg.MaxImportSize,
		Retention:      cfg.MonitorRetention,
		MaxDuration:    cfg.MaxDuration,
		Connections:    cfg.FetchConns,
		NodeID:         nodeID(cfg),
		Log:            log,
	}, store, blobs, fetcher)
	if err != nil {
		return err
	}

	var public *url.URL
	if cfg.PublicURL != "" {
		public, _ = url.Parse(strings.TrimSuffix(cfg.PublicURL, "/")) // checked by Validate
	}
	handler := graph.NewHandler(graph.Config{
		PublicURL:      public,
		TrustedProxies: cfg.TrustedProxies,
		MaxUploadSize:  cfg.MaxUploadSize,
		DownloadURLTTL: cfg.DownloadURLTTL,
		SigningKey:     key,
	}, graph.Deps{Log: log, Accounts: store, Items: store, Blobs: blobs, Jobs: queue, Sessions: store})

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "ferry: listening on %s  (API base %s/v1.0)\n", base, base)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
			cancel()
		}
	})
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
	cancel()
	wg.Wait()
	close(errc)
	return <-errc // nil after a clean stop
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
