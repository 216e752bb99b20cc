package graph

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/ferrydrive/ferry"
)

// graphError is the status and the basic Graph error code for one Kind.
// The top-level code is always one of Graph's basic codes; detailed codes
// go into innerError.code.
type graphError struct {
	status int
	code   string
}

// kindErrors is the only Kind → HTTP status → Graph code table.
var kindErrors = map[ferry.Kind]graphError{
	ferry.Internal:        {http.StatusInternalServerError, "generalException"},
	ferry.Invalid:         {http.StatusBadRequest, "invalidRequest"},
	ferry.Unauthenticated: {http.StatusUnauthorized, "unauthenticated"},
	ferry.Forbidden:       {http.StatusForbidden, "accessDenied"},
	ferry.NotFound:        {http.StatusNotFound, "itemNotFound"},
	ferry.NameConflict:    {http.StatusConflict, "nameAlreadyExists"},
	ferry.Conflict:        {http.StatusConflict, "notAllowed"},
	ferry.Modified:        {http.StatusPreconditionFailed, "resourceModified"},
	ferry.TooLarge:        {http.StatusRequestEntityTooLarge, "invalidRequest"},
	ferry.InvalidRange:    {http.StatusRequestedRangeNotSatisfiable, "invalidRange"},
	ferry.Throttled:       {http.StatusTooManyRequests, "activityLimitReached"},
	ferry.QuotaExceeded:   {http.StatusInsufficientStorage, "quotaLimitReached"},
	ferry.Unavailable:     {http.StatusServiceUnavailable, "serviceNotAvailable"},
	ferry.NotSupported:    {http.StatusNotImplemented, "notSupported"},
	ferry.Gone:            {http.StatusGone, "resyncRequired"},
}

// errorFor maps err to its status and basic code; unknown kinds are
// internal errors.
func errorFor(err error) graphError {
	if errors.Is(err, errMethodNotAllowed) {
		return graphError{http.StatusMethodNotAllowed, "notAllowed"}
	}
	if errors.Is(err, errFailedDependency) {
		return graphError{http.StatusFailedDependency, "failedDependency"}
	}
	if ge, ok := kindErrors[ferry.KindOf(err)]; ok {
		return ge
	}
	return kindErrors[ferry.Internal]
}

// errMethodNotAllowed marks the one error that has no Kind of its own:
// 405, which only the router produces.
var errMethodNotAllowed = errors.New("method not allowed")

// errorBody is the Graph (OData v4) error format.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code       string     `json:"code"`
	Message    string     `json:"message"`
	InnerError innerError `json:"innerError"`
}

type innerError struct {
	Code      string `json:"code,omitempty"`
	Date      string `json:"date"`
	RequestID string `json:"request-id"`
}

// writeError is the only place that writes an error response. Internal
// errors are logged here, once, and reach the client only as a generic
// message.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	ge := errorFor(err)
	kind := ferry.KindOf(err)
	if kind == ferry.Internal || ge.status == http.StatusInternalServerError {
		log.ErrorContext(r.Context(), "internal error", "err", err, "method", r.Method,
			"path", redactPath(r.URL.EscapedPath()), "request_id", requestID(r))
	}
	code := ferry.CodeOf(err)
	if kind == ferry.Internal {
		code = ""
	}
	if kind == ferry.TooLarge && code == "" {
		code = "maxFileSizeExceeded"
	}
	if kind == ferry.Throttled && code == "" {
		code = "throttledRequest"
	}
	if kind == ferry.Throttled || kind == ferry.Unavailable {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter(err)))
	}
	encode(w, ge.status, errorBody{Error: errorDetail{
		Code:    ge.code,
		Message: ferry.Message(err),
		InnerError: innerError{
			Code:      code,
			Date:      time.Now().UTC().Format("2006-01-02T15:04:05Z"),
			RequestID: requestID(r),
		},
	}})
}

// retryAfter is the whole number of seconds a client should wait; at least 1.
func retryAfter(err error) int {
	var fe *ferry.Error
	if errors.As(err, &fe) && fe.RetryAfter > 0 {
		return fe.RetryAfter
	}
	return 1
}
