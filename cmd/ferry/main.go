// Command ferry is the Ferry drive server and its command-line tools:
//
//	ferry serve                      run the server (embedded SQLite and files in ./ferry-data)
//	ferry token create --user NAME   print a new bearer token for NAME
//	ferry import URL --to /Folder    upload from URL through a running server, with a progress bar
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "ferry:", err)
		}
		os.Exit(exitCode(err))
	}
}

// usageError marks errors in the command line itself.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var u usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0 // --help asked for the usage, which was printed
	case errors.As(err, &u):
		return 2
	}
	return 1
}

const usage = `usage: ferry <command> [flags]

commands:
  serve          run the drive server (see ferry serve --help)
  token create   create a bearer token: ferry token create --user NAME [--scopes Files.Read,Files.ReadWrite]
  import         upload from URL through a running server: ferry import URL --to /Folder
`

// run is the whole program, minus process globals, so tests can call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], getenv, stdout, stderr)
	case "token":
		if len(args) < 2 || args[1] != "create" {
			fmt.Fprint(stderr, usage)
			return usageError{"want: ferry token create --user NAME"}
		}
		return runTokenCreate(ctx, args[2:], getenv, stdout, stderr)
	case "import":
		return runImport(ctx, args[1:], getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}
