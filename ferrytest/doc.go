// Package ferrytest holds conformance suites for the ferry interfaces, in
// the style of testing/fstest.TestFS: TestBlobStore, TestItemStore,
// TestAccountStore, TestJobStore and TestSessionStore. Every
// implementation runs the same suite, so the interface doc comments and
// the implementations cannot drift apart: sqlstore on SQLite and on
// PostgreSQL, fsblob, and the in-memory fake NewBlobStore (for unit
// tests that need no disk), which passes the same suite. Only tests import this package.
package ferrytest
