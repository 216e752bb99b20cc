package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydrive/ferry/blob/s3blob"
)

// Config is everything `ferry serve` can be told. Only this package reads
// configuration; each other package receives just the values it needs.
type Config struct {
	Listen         string
	Data           string
	DB             string
	PublicURL      string
	FetchAllow     []netip.Prefix
	Workers        int
	TrustedProxies []netip.Prefix

	Quota            int64         // default quota of a new user's drive
	MaxImportSize    int64         // largest file an upload from URL may fetch
	MaxUploadSize    int64         // largest simple PUT upload
	MonitorRetention time.Duration // how long a finished job's monitor stays readable
	DownloadURLTTL   time.Duration // lifetime of a download URL
	PerUserImports   int           // imports one user may have running at once
	ImportRate       float64       // sustained new imports per second per user before 429
	ImportBurst      int           // new imports per user accepted at once before the rate applies
	ConnectTimeout   time.Duration
	HeaderTimeout    time.Duration
	IdleTimeout      time.Duration
	MaxDuration      time.Duration // an import fails this long after its first attempt began
	FetchConns       int           // most connections one import opens
	FetchHostConns   int           // most connections to one origin host across the node's imports
	NodeID           string
	DeltaRetention   time.Duration // how long a delta token stays valid
	MinFreeSpace     int64         // local disk kept free below every staged write

	// Blobs is "" for local files in Data, or s3://BUCKET[/PREFIX].
	Blobs       string
	S3Endpoint  string
	S3Region    string
	S3PathStyle bool
	S3Presign   bool
	S3AccessKey string // AWS_ACCESS_KEY_ID; empty: the SDK's chain
	S3SecretKey string // AWS_SECRET_ACCESS_KEY
	S3Session   string // AWS_SESSION_TOKEN

	MetricsListen     string        // address of the Prometheus listener; "" is off
	LogLevel          string        // debug, info, warn, error
	LogFormat         string        // text, json
	BodyIdleTimeout   time.Duration // a request body that sends nothing this long is cut off
	MaxConnsPerClient int           // concurrent connections one client address may hold
	TLSCert, TLSKey   string        // PEM files; both set serves HTTPS
}

const (
	kib = int64(1) << 10
	mib = kib << 10
	gib = mib << 10
	tib = gib << 10
)

// defaultConfig holds the defaults of DESIGN.md §4; outside checks rely on them.
func defaultConfig() Config {
	return Config{
		Listen:           "127.0.0.1:8080",
		Data:             "./ferry-data",
		Workers:          16,
		Quota:            tib,
		MaxImportSize:    100 * gib,
		MaxUploadSize:    250 * mib,
		MonitorRetention: 24 * time.Hour,
		DownloadURLTTL:   time.Hour,
		PerUserImports:   16,
		ImportRate:       5,
		ImportBurst:      1000,
		ConnectTimeout:   10 * time.Second,
		HeaderTimeout:    30 * time.Second,
		IdleTimeout:      20 * time.Second,
		MaxDuration:      24 * time.Hour,
		DeltaRetention:   720 * time.Hour,
		FetchConns:       8,
		FetchHostConns:   16,
		MinFreeSpace:     gib,
		S3Region:         "us-east-1",

		LogLevel:          "info",
		LogFormat:         "text",
		BodyIdleTimeout:   time.Minute,
		MaxConnsPerClient: 256,
	}
}

// serveFlags registers every serve setting on fs. Each flag --name has an
// environment variable FERRY_NAME (dashes become underscores) of the same
// meaning; a flag given on the command line beats its variable.
func serveFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Listen, "listen", c.Listen, "address to serve on (`host:port`; :0 picks a free port)")
	fs.StringVar(&c.Data, "data", c.Data, "folder for the SQLite file and local blobs")
	fs.StringVar(&c.DB, "db", c.DB, "database: empty for SQLite in --data, or a postgres:// DSN")
	fs.StringVar(&c.PublicURL, "public-url", c.PublicURL, "base for absolute URLs (default: from each request)")
	fs.Var(prefixList{&c.FetchAllow}, "fetch-allow", "comma-separated CIDRs that upload from URL may reach despite the SSRF guard, on any port")
	fs.IntVar(&c.Workers, "workers", c.Workers, "concurrent upload-from-URL downloads on this node")
	fs.Var(prefixList{&c.TrustedProxies}, "trusted-proxies", "comma-separated CIDRs of reverse proxies whose X-Forwarded-Proto/Host are believed")
	fs.Var(sizeValue{&c.Quota}, "quota", "drive quota of new users (e.g. 1TiB)")
	fs.Var(sizeValue{&c.MaxImportSize}, "max-import-size", "largest file an upload from URL may fetch")
	fs.Var(sizeValue{&c.MaxUploadSize}, "max-upload-size", "largest simple PUT upload")
	fs.DurationVar(&c.MonitorRetention, "monitor-retention", c.MonitorRetention, "how long a finished job's monitor stays readable")
	fs.DurationVar(&c.DownloadURLTTL, "download-url-ttl", c.DownloadURLTTL, "lifetime of a download URL")
	fs.IntVar(&c.PerUserImports, "per-user-imports", c.PerUserImports, "imports one user may have running at once; the rest wait as notStarted")
	fs.Float64Var(&c.ImportRate, "import-rate", c.ImportRate, "sustained new imports per second per user before 429")
	fs.IntVar(&c.ImportBurst, "import-burst", c.ImportBurst, "new imports per user accepted at once before --import-rate applies")
	fs.DurationVar(&c.ConnectTimeout, "fetch-connect-timeout", c.ConnectTimeout, "upload from URL: connect timeout")
	fs.DurationVar(&c.HeaderTimeout, "fetch-header-timeout", c.HeaderTimeout, "upload from URL: response header timeout")
	fs.DurationVar(&c.IdleTimeout, "fetch-idle-timeout", c.IdleTimeout, "upload from URL: fail a read after this long without bytes")
	fs.DurationVar(&c.MaxDuration, "fetch-max-duration", c.MaxDuration, "upload from URL: fail an import this long after its first attempt began")
	fs.DurationVar(&c.DeltaRetention, "delta-retention", c.DeltaRetention, "how long delta tokens stay valid (then 410 resyncRequired); changes older than this are forgotten")
	fs.IntVar(&c.FetchConns, "fetch-connections", c.FetchConns, "upload from URL: most connections one import opens (segmented downloads)")
	fs.IntVar(&c.FetchHostConns, "fetch-host-connections", c.FetchHostConns, "upload from URL: most connections to one origin host across all imports of the node")
	fs.Var(sizeValue{&c.MinFreeSpace}, "min-free-space", "local disk kept free for the database and the system: a write (import, upload session, PUT) that would leave less waits or is refused (503); 0 turns the check off")
	fs.StringVar(&c.Blobs, "blobs", c.Blobs, "where blobs live: empty for local files in --data, or `s3://BUCKET[/PREFIX]` for S3-compatible storage")
	fs.StringVar(&c.S3Endpoint, "s3-endpoint", c.S3Endpoint, "S3 server `URL` (default: AWS)")
	fs.StringVar(&c.S3Region, "s3-region", c.S3Region, "S3 region")
	fs.BoolVar(&c.S3PathStyle, "s3-path-style", c.S3PathStyle, "S3 path-style addressing (http://host/bucket/key), which most S3-compatible servers want")
	fs.BoolVar(&c.S3Presign, "s3-presign", c.S3Presign, "redirect downloads to short-lived presigned S3 URLs instead of streaming them")
	fs.StringVar(&c.NodeID, "node-id", c.NodeID, "stable name of this node among several on one PostgreSQL database (default: derived from host and --data)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "address (`host:port`) of a separate listener serving Prometheus /metrics (default: off)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "least level logged: debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json")
	fs.DurationVar(&c.BodyIdleTimeout, "body-idle-timeout", c.BodyIdleTimeout, "cut off a request body that sends nothing this long")
	fs.IntVar(&c.MaxConnsPerClient, "max-conns-per-client", c.MaxConnsPerClient, "concurrent connections one client address may hold; more are closed at once")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate (chain) `file`: serve HTTPS directly (with --tls-key)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key `file` of --tls-cert")
}

// parseFlags parses args into fs, with flags allowed before, between and
// after the positional arguments (Go's flag package stops at the first
// positional one; scripts write "ferry import URL --to /X"), then fills
// every flag that was not given from its FERRY_* environment variable. It
// returns the positional arguments in order; everything after "--" is
// positional.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		// fs.Parse consumed a "--" terminator if it saw one: the rest is
		// all positional.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		name := envName(f.Name)
		if v := getenv(name); v != "" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	return positional, errors.Join(errs...)
}

func envName(flagName string) string {
	return "FERRY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.Listen == "":
		return errors.New("--listen is empty")
	case c.DB == "" && c.Data == "":
		return errors.New("give --data or --db")
	case c.Workers < 1:
		return errors.New("--workers must be at least 1")
	case c.FetchConns < 1 || c.FetchHostConns < 1:
		return errors.New("--fetch-connections and --fetch-host-connections must be at least 1")
	case c.PerUserImports < 1:
		return errors.New("--per-user-imports must be at least 1")
	case c.Quota <= 0, c.MaxImportSize <= 0, c.MaxUploadSize <= 0:
		return errors.New("sizes must be positive")
	case c.MinFreeSpace < 0:
		return errors.New("--min-free-space must not be negative")
	case c.ImportRate <= 0 || c.ImportBurst < 1:
		return errors.New("--import-rate must be positive and --import-burst at least 1")
	case c.MonitorRetention <= 0 || c.DownloadURLTTL <= 0 || c.MaxDuration <= 0 || c.BodyIdleTimeout <= 0 || c.DeltaRetention <= 0:
		return errors.New("durations must be positive")
	case c.MaxConnsPerClient < 1:
		return errors.New("--max-conns-per-client must be at least 1")
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("give both --tls-cert and --tls-key, or neither")
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
	}
	if c.Blobs != "" {
		if _, _, err := s3blob.ParseLocation(c.Blobs); err != nil {
			return fmt.Errorf("--blobs %q: want s3://BUCKET[/PREFIX], or nothing for local files", c.Blobs)
		}
	}
	if c.S3Endpoint != "" {
		u, err := url.Parse(c.S3Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("--s3-endpoint %q must be http(s)://HOST[:PORT]", c.S3Endpoint)
		}
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--public-url %q must be an absolute http(s) URL", c.PublicURL)
		}
	}
	return nil
}

// prefixList is a flag.Value for a comma-separated list of CIDRs; a bare
// address means just that address.
type prefixList struct{ p *[]netip.Prefix }

func (l prefixList) String() string {
	if l.p == nil {
		return ""
	}
	s := make([]string, len(*l.p))
	for i, p := range *l.p {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (l prefixList) Set(v string) error {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return fmt.Errorf("%q is not a CIDR or address", f)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return fmt.Errorf("%q is not a CIDR", f)
		}
		out = append(out, p.Masked())
	}
	*l.p = out
	return nil
}

// sizeValue is a flag.Value for byte sizes such as 250MiB, 1TiB or 4096.
type sizeValue struct{ p *int64 }

func (s sizeValue) String() string {
	if s.p == nil {
		return ""
	}
	return formatSize(*s.p)
}

func (s sizeValue) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s.p = n
	return nil
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"TiB", tib}, {"GiB", gib}, {"MiB", mib}, {"KiB", kib},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
}

func parseSize(v string) (int64, error) {
	t := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(strings.ToUpper(t), strings.ToUpper(u.suffix)) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size like 250MiB or 1TiB", v)
	}
	return n * mult, nil
}

func formatSize(n int64) string {
	for _, u := range sizeUnits[:4] {
		if n >= u.mult && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
