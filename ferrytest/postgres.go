package ferrytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresEnv names the environment variable that holds the DSN of a
// PostgreSQL server tests may create databases on.
const PostgresEnv = "FERRY_TEST_POSTGRES"

// PostgresDSN returns the DSN of a new, empty PostgreSQL database for one
// test, or skips the test when FERRY_TEST_POSTGRES is not set. The database,
// ferry_test_<random>, is created through the DSN in FERRY_TEST_POSTGRES (a
// postgres:// URL whose user may create databases) and dropped, with any
// connections still open to it, when the test ends.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		t.Skip("set " + PostgresEnv + " to a PostgreSQL DSN to run")
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("%s must be a postgres:// URL", PostgresEnv)
	}
	b := make([]byte, 8)
	rand.Read(b)
	name := "ferry_test_" + hex.EncodeToString(b)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v", PostgresEnv, redact(err, u))
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database %s: %v", name, redact(err, u))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		admin, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop database %s: connect: %v", name, redact(err, u))
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, redact(err, u))
		}
	})

	dsn := *u
	dsn.Path = "/" + name
	dsn.RawPath = ""
	return dsn.String()
}

// redact keeps a password in the DSN out of test logs.
func redact(err error, u *url.URL) string {
	msg := err.Error()
	if p, ok := u.User.Password(); ok && p != "" {
		msg = strings.ReplaceAll(msg, p, "xxxxx")
	}
	return msg
}
