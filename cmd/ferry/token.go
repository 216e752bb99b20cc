package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/ferrydrive/ferry"
)

// runTokenCreate creates the user if needed and prints only the new token.
// It works beside a running server on the same data: the token is a row in
// the shared database, so the server accepts it at once.
func runTokenCreate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg := defaultConfig()
	var user, scopes string
	fs := flag.NewFlagSet("ferry token create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&user, "user", "", "user name (created with a drive if new)")
	fs.StringVar(&scopes, "scopes", string(ferry.ScopeReadWrite), "comma-separated scopes: Files.Read, Files.ReadWrite, Files.ReadWrite.All")
	fs.StringVar(&cfg.Data, "data", cfg.Data, "data folder of the server (SQLite)")
	fs.StringVar(&cfg.DB, "db", cfg.DB, "postgres:// DSN of the server's database")
	fs.Var(sizeValue{&cfg.Quota}, "quota", "drive quota if the user is new")
	rest, err := parseFlags(fs, args, getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if user == "" {
		return usageError{"--user is required"}
	}
	if len(rest) > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", rest[0])}
	}
	sc, err := ferry.ParseScopes(scopes)
	if err != nil {
		return usageError{ferry.Message(err)}
	}
	store, err := openStore(ctx, cfg.Data, cfg.DB)
	if err != nil {
		return err
	}
	defer store.Close()
	u, _, err := store.EnsureUser(ctx, user, cfg.Quota)
	if err != nil {
		return err
	}
	tok, err := store.CreateToken(ctx, u.ID, sc)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
