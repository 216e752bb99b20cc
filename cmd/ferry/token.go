package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferrydrive/ferry"
)

// The token and user commands work on the server's database directly
// (--data or --db), also while the server runs: tokens and users are rows
// in the shared database, and the server reads them on every request, so
// a new token works and a revoked one fails at once.

// storeFlags registers --data and --db on fs.
func storeFlags(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.Data, "data", cfg.Data, "data folder of the server (SQLite)")
	fs.StringVar(&cfg.DB, "db", cfg.DB, "postgres:// DSN of the server's database")
}

// parseCommand parses a subcommand's flags and checks its count of
// positional arguments.
func parseCommand(fs *flag.FlagSet, args []string, getenv func(string) string, positional ...string) ([]string, error) {
	rest, err := parseFlags(fs, args, getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err.Error()}
	}
	if len(rest) < len(positional) {
		return nil, usageError{fmt.Sprintf("give the %s", positional[len(rest)])}
	}
	if len(rest) > len(positional) {
		return nil, usageError{fmt.Sprintf("unexpected argument %q", rest[len(positional)])}
	}
	return rest, nil
}

func runToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	switch sub {
	case "create":
		return runTokenCreate(ctx, args[1:], getenv, stdout, stderr)
	case "list":
		return runTokenList(ctx, args[1:], getenv, stdout, stderr)
	case "revoke":
		return runTokenRevoke(ctx, args[1:], getenv, stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return usageError{"want: ferry token create|list|revoke"}
}

// runTokenCreate creates the user if needed and prints only the new token.
func runTokenCreate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg := defaultConfig()
	var user, scopes, name, expires string
	fs := flag.NewFlagSet("ferry token create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&user, "user", "", "user name (created with a drive if new)")
	fs.StringVar(&scopes, "scopes", string(ferry.ScopeReadWrite), "comma-separated scopes: Files.Read, Files.ReadWrite, Files.Read.All, Files.ReadWrite.All")
	fs.StringVar(&name, "name", "", "a label for the token, shown by token list")
	fs.StringVar(&expires, "expires", "", "lifetime, e.g. 720h or 30d (default: never expires)")
	storeFlags(fs, &cfg)
	fs.Var(sizeValue{&cfg.Quota}, "quota", "drive quota if the user is new")
	if _, err := parseCommand(fs, args, getenv); err != nil {
		return err
	}
	if user == "" {
		return usageError{"--user is required"}
	}
	sc, err := ferry.ParseScopes(scopes)
	if err != nil {
		return usageError{ferry.Message(err)}
	}
	opts := ferry.TokenOptions{Scopes: sc, Name: name}
	if expires != "" {
		d, err := parseLifetime(expires)
		if err != nil {
			return usageError{err.Error()}
		}
		opts.Expires = time.Now().Add(d)
	}
	store, err := openStore(ctx, cfg.Data, cfg.DB)
	if err != nil {
		return err
	}
	defer store.Close()
	u, _, err := store.EnsureUser(ctx, user, cfg.Quota)
	if err != nil {
		return plain(err)
	}
	tok, _, err := store.IssueToken(ctx, u.ID, opts)
	if err != nil {
		return plain(err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// parseLifetime reads --expires: a Go duration (720h, 90m) or whole days
// (30d).
func parseLifetime(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--expires %q: want a positive duration such as 720h or 30d", s)
	}
	return d, nil
}

// plain turns a store error into the words its message holds: the CLI
// shows ferry.Message for errors meant for users and the full error
// otherwise.
func plain(err error) error {
	if ferry.KindOf(err) == ferry.Internal {
		return err
	}
	return errors.New(ferry.Message(err))
}

// tokenJSON is a line of `ferry token list --json`; it never holds the
// secret, which is not stored.
type tokenJSON struct {
	ID       string   `json:"id"`
	User     string   `json:"user"`
	Name     string   `json:"name"`
	Scopes   []string `json:"scopes"`
	Created  string   `json:"created"`
	Expires  string   `json:"expires,omitempty"`
	Expired  bool     `json:"expired"`
	LastUsed string   `json:"lastUsed,omitempty"`
}

func timeText(t time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	return t.UTC().Format(time.RFC3339)
}

func runTokenList(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg := defaultConfig()
	var user string
	var asJSON bool
	fs := flag.NewFlagSet("ferry token list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&user, "user", "", "only this user's tokens")
	fs.BoolVar(&asJSON, "json", false, "print a JSON array instead of a table")
	storeFlags(fs, &cfg)
	if _, err := parseCommand(fs, args, getenv); err != nil {
		return err
	}
	store, err := openStore(ctx, cfg.Data, cfg.DB)
	if err != nil {
		return err
	}
	defer store.Close()
	var id ferry.UserID
	if user != "" {
		u, err := store.UserByName(ctx, user)
		if err != nil {
			return plain(err)
		}
		id = u.ID
	}
	tokens, err := store.Tokens(ctx, id)
	if err != nil {
		return err
	}
	now := time.Now()
	if asJSON {
		out := make([]tokenJSON, len(tokens))
		for i, t := range tokens {
			out[i] = tokenJSON{ID: t.ID, User: t.UserName, Name: t.Name, Scopes: strings.Split(t.Scopes.String(), ","),
				Created: timeText(t.Created, ""), Expires: timeText(t.Expires, ""), Expired: t.Expired(now),
				LastUsed: timeText(t.LastUsed, "")}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tLABEL\tSCOPES\tCREATED\tEXPIRES\tLAST USED")
	for _, t := range tokens {
		expires := timeText(t.Expires, "never")
		if t.Expired(now) {
			expires = "expired:" + expires
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, cell(t.UserName), cell(t.Name), t.Scopes,
			timeText(t.Created, "-"), expires, timeText(t.LastUsed, "never"))
	}
	return tw.Flush()
}

// cell keeps a table cell one word: empty is "-", spaces and tabs
// become '_' (labels and names are free text).
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' {
			return '_'
		}
		return r
	}, s)
}

func runTokenRevoke(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("ferry token revoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	storeFlags(fs, &cfg)
	rest, err := parseCommand(fs, args, getenv, "token ID (see ferry token list)")
	if err != nil {
		return err
	}
	store, err := openStore(ctx, cfg.Data, cfg.DB)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.RevokeToken(ctx, rest[0]); err != nil {
		return plain(err)
	}
	fmt.Fprintf(stdout, "revoked %s\n", rest[0])
	return nil
}

func runUser(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	switch sub {
	case "create":
		return runUserCreate(ctx, args[1:], getenv, stdout, stderr)
	case "list":
		return runUserList(ctx, args[1:], getenv, stdout, stderr)
	case "quota":
		return runUserQuota(ctx, args[1:], getenv, stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return usageError{"want: ferry user create|list|quota"}
}

func runUserCreate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg := defaultConfig()
	var email string
	fs := flag.NewFlagSet("ferry user create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&email, "email", "", "the user's e-mail address (unique; sharing invitations find users by it)")
	fs.Var(sizeValue{&cfg.Quota}, "quota", "quota of the user's drive")
	storeFlags(fs, &cfg)
	rest, err := parseCommand(fs, args, getenv, "user name")
	if err != nil {
		return err
	}
	store, err := openStore(ctx, cfg.Data, cfg.DB)
	if err != nil {
		return err
	}
	defer store.Close()
	u, err := store.CreateUser(ctx, rest[0], email, cfg.Quota)
	if err != nil {
		return plain(err)
	}
	fmt.Fprintf(stdout, "created user %s\n", u.Name)
	return nil
}

// userJSON is a line of `ferry user list --json`.
type userJSON struct {
	Name    string `json:"name"`
	Email   string `json:"email,omitempty"`
	Quota   int64  `json:"quota"`
	Used    int64  `json:"used"`
	Created string `json:"created"`
}

func runUserList(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg := defaultConfig()
	var asJSON bool
	fs := flag.NewFlagSet("ferry user list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&asJSON, "json", false, "print a JSON array instead of a table")
	storeFlags(fs, &cfg)
	if _, err := parseCommand(fs, args, getenv); err != nil {
		return err
	}
	store, err := openStore(ctx, cfg.Data, cfg.DB)
	if err != nil {
		return err
	}
	defer store.Close()
	users, err := store.Users(ctx)
	if err != nil {
		return err
	}
	out := make([]userJSON, 0, len(users))
	for _, u := range users {
		d, err := store.DriveOf(ctx, u.ID)
		if err != nil {
			return err
		}
		out = append(out, userJSON{Name: u.Name, Email: u.Email, Quota: d.Quota, Used: d.Used, Created: timeText(u.Created, "")})
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tEMAIL\tQUOTA\tUSED\tCREATED")
	for _, u := range out {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", cell(u.Name), cell(u.Email), formatSize(u.Quota), u.Used, u.Created)
	}
	return tw.Flush()
}

func runUserQuota(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("ferry user quota", flag.ContinueOnError)
	fs.SetOutput(stderr)
	storeFlags(fs, &cfg)
	rest, err := parseCommand(fs, args, getenv, "user name", "size (e.g. 10GiB)")
	if err != nil {
		return err
	}
	size, err := parseSize(rest[1])
	if err != nil {
		return usageError{err.Error()}
	}
	store, err := openStore(ctx, cfg.Data, cfg.DB)
	if err != nil {
		return err
	}
	defer store.Close()
	u, err := store.UserByName(ctx, rest[0])
	if err != nil {
		return plain(err)
	}
	if err := store.SetQuota(ctx, u.ID, size); err != nil {
		return plain(err)
	}
	fmt.Fprintf(stdout, "quota of %s: %s\n", u.Name, formatSize(size))
	return nil
}
