// Package ferrytest holds conformance suites for the ferry interfaces, in
// the style of testing/fstest.TestFS, and in-memory fakes that pass them.
// Every implementation, fakes included, runs the same suite, so the
// interface doc comments and the implementations cannot drift apart.
// Only tests import this package.
package ferrytest
