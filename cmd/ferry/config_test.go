package main

import (
	"flag"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestServeFlagsAndEnvironment(t *testing.T) {
	env := map[string]string{
		"FERRY_LISTEN":            "127.0.0.1:9999",
		"FERRY_WORKERS":           "7",
		"FERRY_FETCH_ALLOW":       "127.0.0.1/32, 10.1.0.0/16",
		"FERRY_QUOTA":             "2GiB",
		"FERRY_MONITOR_RETENTION": "2h",
	}
	cfg := defaultConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	serveFlags(fs, &cfg)
	if _, err := parseFlags(fs, []string{"--workers", "3", "--data", "/srv/ferry"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if cfg.Workers != 3 {
		t.Errorf("Workers = %d: a flag must beat its environment variable", cfg.Workers)
	}
	if cfg.Listen != "127.0.0.1:9999" || cfg.Data != "/srv/ferry" || cfg.Quota != 2<<30 || cfg.MonitorRetention != 2*time.Hour {
		t.Errorf("config = %+v", cfg)
	}
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.1.0.0/16")}
	if len(cfg.FetchAllow) != 2 || cfg.FetchAllow[0] != want[0] || cfg.FetchAllow[1] != want[1] {
		t.Errorf("FetchAllow = %v, want %v", cfg.FetchAllow, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestDefaultsMatchDesign(t *testing.T) {
	c := defaultConfig()
	if c.Listen != "127.0.0.1:8080" || c.Data != "./ferry-data" || c.Quota != 1<<40 || c.MaxImportSize != 100<<30 ||
		c.MaxUploadSize != 250<<20 || c.ConnectTimeout != 10*time.Second || c.HeaderTimeout != 30*time.Second ||
		c.IdleTimeout != 20*time.Second || c.MonitorRetention != 24*time.Hour || c.DownloadURLTTL != time.Hour ||
		c.ImportBurst < 500 {
		t.Fatalf("defaults drifted from DESIGN.md §4: %+v", c)
	}
}

func TestBadSettings(t *testing.T) {
	for _, args := range [][]string{
		{"--fetch-allow", "not-a-cidr"},
		{"--quota", "lots"},
		{"--quota", "-5"},
		{"--workers", "x"},
	} {
		cfg := defaultConfig()
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		serveFlags(fs, &cfg)
		if _, err := parseFlags(fs, args, func(string) string { return "" }); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
	for _, mut := range []func(*Config){
		func(c *Config) { c.Workers = 0 },
		func(c *Config) { c.PublicURL = "ftp://x" },
		func(c *Config) { c.PublicURL = "/relative" },
		func(c *Config) { c.ImportRate = 0 },
	} {
		c := defaultConfig()
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("Validate accepted %+v", c)
		}
	}
	// A bad environment variable is an error too, naming the variable.
	cfg := defaultConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	serveFlags(fs, &cfg)
	_, err := parseFlags(fs, nil, func(k string) string {
		if k == "FERRY_WORKERS" {
			return "many"
		}
		return ""
	})
	if err == nil || !strings.Contains(err.Error(), "FERRY_WORKERS") {
		t.Errorf("bad FERRY_WORKERS: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "250MiB": 250 << 20, "1TiB": 1 << 40, "2 GiB": 2 << 30, "5MB": 5e6, "1gib": 1 << 30} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestParseFlagsInterspersed(t *testing.T) {
	for _, tt := range []struct {
		args     []string
		wantPos  []string
		wantTo   string
		wantWait bool
	}{
		{[]string{"u1", "u2", "--to", "/X"}, []string{"u1", "u2"}, "/X", true},
		{[]string{"--to", "/X", "u1", "-wait=false", "u2"}, []string{"u1", "u2"}, "/X", false},
		{[]string{"u1", "--", "--to", "-x"}, []string{"u1", "--to", "-x"}, "", true},
		{[]string{"--to=/Y"}, nil, "/Y", true},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		to := fs.String("to", "", "")
		wait := fs.Bool("wait", true, "")
		got, err := parseFlags(fs, tt.args, func(string) string { return "" })
		if err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		if !slices.Equal(got, tt.wantPos) || *to != tt.wantTo || *wait != tt.wantWait {
			t.Errorf("%q: positional %q, --to %q, --wait %v; want %q, %q, %v", tt.args, got, *to, *wait, tt.wantPos, tt.wantTo, tt.wantWait)
		}
	}
}
