// Command ferry is the Ferry drive server and its command-line tools:
//
//	ferry serve                      run the server (embedded SQLite and files in ./ferry-data)
//	ferry token create --user NAME   print a new bearer token for NAME
//	ferry token list | revoke ID     list or revoke tokens
//	ferry user create | list | quota manage users and their quotas
//	ferry import URL… --to /Folder   upload from URL through a running server, with progress bars
//	ferry ls, get, put, mkdir, rm, mv, jobs, cancel   use a drive from the shell
//
// The usage constant below lists every command.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

// minProcs is the fewest Ps the server runs with unless GOMAXPROCS says
// otherwise. An import keeps three goroutines busy (the network reader and
// two hashers); with only two Ps on a two-core machine the reader waits up
// to a scheduler slice for a P whenever both hashers hold one, the socket
// buffer fills and the origin pauses. With more Ps than cores the kernel
// wakes the reader at once. On two cores this cut a 1 GiB import from
// about 1.2x to about 1.1x curl's time (cmd/ferry-bench).
const minProcs = 4

func main() {
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < minProcs {
		runtime.GOMAXPROCS(minProcs)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go forceExitOnSecondSignal()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		reportError(os.Stderr, err)
		os.Exit(exitCode(err))
	}
}

// forceExitOnSecondSignal ends the process at once when a second
// SIGTERM/SIGINT arrives: the first starts a graceful stop (run's context),
// which waits for handlers and jobs; an operator who does not want to wait
// sends another.
func forceExitOnSecondSignal() {
	c := make(chan os.Signal, 2)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	<-c
	<-c
	fmt.Fprintln(os.Stderr, "ferry: second signal; exiting without waiting")
	os.Exit(1)
}

// reportError prints the one line a failed command leaves on stderr,
// unless the usage was asked for or the command has told it already.
func reportError(w io.Writer, err error) {
	var told silentError
	if !errors.Is(err, flag.ErrHelp) && !errors.As(err, &told) {
		fmt.Fprintln(w, "ferry:", err)
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

const usage = `usage: ferry <command> [flags]   (ferry <command> --help for its flags)

server:
  serve          run the drive server
  token create   create a bearer token: ferry token create --user NAME [--scopes Files.Read,Files.ReadWrite]
                 [--expires 720h] [--name LABEL]
  token list     list tokens (never their secrets): ferry token list [--user NAME] [--json]
  token revoke   revoke a token at once: ferry token revoke ID
  user create    create a user: ferry user create NAME [--email ADDR] [--quota SIZE]
  user list      list users with their quotas and use: ferry user list [--json]
  user quota     change a user's quota: ferry user quota NAME SIZE
                 (token and user commands take --data DIR or --db DSN, as serve does,
                 and work while the server runs)

drive (talk to a running server: --server or FERRY_SERVER, --token or FERRY_TOKEN):
  ls [PATH]           list a folder: type, size, modified, name (--json for scripts)
  get PATH [FILE]     download a file to FILE, into a folder, or to stdout with -
  put FILE PATH       upload a file (large ones in resumable fragments, with a bar)
  mkdir PATH…         create a folder (-p: with its parents)
  rm PATH…            remove files or folders, folders with everything in them
  mv SRC DST          rename or move; DST an existing folder means into it
  import URL…         upload from URL: ferry import URL… [-i FILE] [--to /Folder]; prints the new paths
  jobs                your running and recent imports and copies
  cancel MONITOR|ID   cancel an import or copy

Drive paths are absolute: /Downloads/a.txt.
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
		return runToken(ctx, args[1:], getenv, stdout, stderr)
	case "user":
		return runUser(ctx, args[1:], getenv, stdout, stderr)
	case "import":
		return runImport(ctx, args[1:], getenv, stdout, stderr)
	case "ls":
		return runLs(ctx, args[1:], getenv, stdout, stderr)
	case "get":
		return runGet(ctx, args[1:], getenv, stdout, stderr)
	case "put":
		return runPut(ctx, args[1:], getenv, stdout, stderr)
	case "mkdir":
		return runMkdir(ctx, args[1:], getenv, stdout, stderr)
	case "rm":
		return runRm(ctx, args[1:], getenv, stdout, stderr)
	case "mv":
		return runMv(ctx, args[1:], getenv, stdout, stderr)
	case "jobs":
		return runJobs(ctx, args[1:], getenv, stdout, stderr)
	case "cancel":
		return runCancel(ctx, args[1:], getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}
