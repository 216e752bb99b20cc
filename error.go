package ferry

import (
	"errors"
	"fmt"
)

// Kind classifies an error so the API layer can choose a status code. The
// set is closed; graph/error.go maps each Kind to one HTTP status and one
// Graph error code.
type Kind uint8

const (
	Internal        Kind = iota // unexpected; logged, never shown to clients
	Invalid                     // the request is malformed (400)
	Unauthenticated             // no or bad token (401)
	Forbidden                   // token lacks the scope, or the action is not allowed (403)
	NotFound                    // no such item, drive, monitor or session (404)
	NameConflict                // an item with that name already exists (409)
	Conflict                    // the request conflicts with the resource's state, e.g. cancel of a finished job (409)
	Modified                    // If-Match / eTag precondition failed (412)
	TooLarge                    // the request body or file is over a size limit (413)
	InvalidRange                // a byte range cannot be satisfied (416)
	Throttled                   // too many requests; retry later (429)
	QuotaExceeded               // the drive's quota would be exceeded (507)
	Unavailable                 // transient; the client may retry (503)
	NotSupported                // the server does not implement this (501)
	Gone                        // a delta token expired or is unknown: start over (410)
)

var kindNames = [...]string{
	Internal: "internal", Invalid: "invalid", Unauthenticated: "unauthenticated",
	Forbidden: "forbidden", NotFound: "not found", NameConflict: "name conflict",
	Conflict: "conflict", Modified: "modified", TooLarge: "too large",
	InvalidRange: "invalid range", Throttled: "throttled", QuotaExceeded: "quota exceeded",
	Unavailable: "unavailable", NotSupported: "not supported", Gone: "gone",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Error is the error type returned by stores and services. Message is safe
// to show to API clients; Code, when set, is a Graph detailed error code
// (e.g. "fragmentOverlap") that goes into innerError.code; Err is the cause,
// for logs only.
type Error struct {
	Kind       Kind
	Code       string
	Message    string
	RetryAfter int // whole seconds, for Throttled and Unavailable; 0 means unset
	Err        error
}

func (e *Error) Error() string {
	switch {
	case e.Err != nil && e.Message != "":
		return e.Message + ": " + e.Err.Error()
	case e.Err != nil:
		return e.Kind.String() + ": " + e.Err.Error()
	case e.Message != "":
		return e.Message
	}
	return e.Kind.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind with a formatted, client-safe
// message. Wrapped errors (%w) become the cause.
func Errorf(k Kind, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: k, Message: err.Error(), Err: errors.Unwrap(err)}
}

// WithCode returns a copy of e carrying the detailed Graph error code.
func (e *Error) WithCode(code string) *Error {
	c := *e
	c.Code = code
	return &c
}

// KindOf reports err's Kind. Errors that are not an *Error are Internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// CodeOf reports the detailed Graph error code of err, or "".
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// Message reports the client-safe message of err. Internal errors, and
// errors that are not an *Error, give a generic message so that internals
// never reach clients.
func Message(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Kind != Internal && e.Message != "" {
		return e.Message
	}
	return "An internal error occurred."
}
