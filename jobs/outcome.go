package jobs

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/fetch"
)

// failure ends a job as failed: code is the monitor's errorCode and msg
// its statusDescription, safe to show (never the URL).
type failure struct {
	code ferry.JobErrorCode
	msg  string
	err  error
}

func (f *failure) Error() string {
	if f.err != nil {
		return string(f.code) + ": " + f.msg + ": " + f.err.Error()
	}
	return string(f.code) + ": " + f.msg
}

func (f *failure) Unwrap() error { return f.err }

// retryable is a transient failure of jobs' own making (not the origin's
// or the store's), with a message safe to show.
type retryable struct{ msg string }

func (e *retryable) Error() string { return e.msg }

var (
	// errSourceChanged says the origin answered with bytes of another
	// version of the file (another validator or total): what was staged
	// is dropped and the download starts over in a fresh staging area.
	errSourceChanged = &retryable{"the source changed while downloading"}
	// errShort says the source sent fewer bytes than it announced.
	errShort = &retryable{"the source sent fewer bytes than it announced"}
)

type verdictKind int

const (
	verdictDone   verdictKind = iota // committed, or ended by its own failure already
	verdictRetry                     // checkpoint, wait, try again
	verdictFail                      // end the job as failed
	verdictCancel                    // end the job as cancelled
	verdictStop                      // River is stopping: checkpoint and resume at the next start
	verdictLost                      // another attempt took the job over
)

type verdict struct {
	kind    verdictKind
	failure *failure
}

// decide is the one place that chooses what an attempt's outcome means
// for the job. err is what the attempt returned, cause why its context
// ended (if it did), stopping whether River is stopping, progressed
// whether the attempt staged bytes no attempt had before, stalls the
// attempts in a row that did not, and last whether River allows no more
// attempts.
func (q *Queue) decide(err, cause error, stopping, progressed bool, stalls int, last bool) verdict {
	var f *failure
	switch {
	case err == nil:
		return verdict{kind: verdictDone}
	case errors.Is(cause, errClaimLost) || ownerLost(err):
		// Another attempt runs the job now (or it has ended): it owns the
		// checkpoint and the staging area, and the store refuses this
		// attempt's writes.
		return verdict{kind: verdictLost}
	case errors.Is(cause, errCancelRequested):
		return verdict{kind: verdictCancel}
	case errors.Is(cause, errTooLong):
		return verdict{kind: verdictFail, failure: &failure{code: ferry.JobTimeout, err: err,
			msg: fmt.Sprintf("The download did not finish within %v.", q.cfg.MaxDuration)}}
	case stopping:
		return verdict{kind: verdictStop}
	case errors.As(err, &f):
		return verdict{kind: verdictFail, failure: f}
	}
	if f := permanentFetch(err); f != nil {
		return verdict{kind: verdictFail, failure: f}
	}
	if !progressed {
		stalls++
	}
	if stalls >= q.cfg.MaxStalls || last {
		return verdict{kind: verdictFail, failure: giveUp(err)}
	}
	return verdict{kind: verdictRetry}
}

// backoff is the delay before the next attempt: RetryBase doubled per
// stall, at most RetryMax. An origin's Retry-After beyond that is honoured
// up to 5 minutes (not RetryMax: a polite origin asking for a minute gets
// it), so that every job still ends in bounded time.
func (q *Queue) backoff(stalls int, err error) time.Duration {
	d := q.cfg.RetryBase << min(stalls, 20)
	d = min(d, q.cfg.RetryMax)
	var fe *fetch.Error
	if errors.As(err, &fe) && fe.RetryAfter > d {
		d = min(fe.RetryAfter, 5*time.Minute)
	}
	return d
}

// permanentFetch turns fetch's permanent errors into failures with a job
// error code; nil for anything else.
func permanentFetch(err error) *failure {
	var fe *fetch.Error
	if !errors.As(err, &fe) || !fe.Permanent {
		return nil
	}
	code := ferry.JobInvalidRequest
	switch fe.Code {
	case fetch.CodeNotFound, fetch.CodeDNSNotFound:
		code = ferry.JobItemNotFound
	case fetch.CodeHTTPStatus:
		if fe.Status == 401 || fe.Status == 403 {
			code = ferry.JobAccessDenied
		}
	}
	return &failure{code: code, msg: safeSentence(fe.Message), err: err}
}

// giveUp is the failure after MaxStalls attempts without new bytes.
func giveUp(last error) *failure {
	msg := "The source stopped sending data."
	var fe *fetch.Error
	var re *retryable
	switch {
	case errors.As(last, &fe) && fe.Message != "":
		msg = "The download made no progress in several attempts; last: " + safeSentence(fe.Message)
	case errors.As(last, &re):
		msg = "The download made no progress in several attempts; last: " + safeSentence(re.msg)
	}
	return &failure{code: ferry.JobGeneralException, msg: msg, err: last}
}

// commitFailure translates an error from creating the item.
func commitFailure(err error) *failure {
	code := ferry.JobGeneralException
	switch ferry.KindOf(err) {
	case ferry.NameConflict:
		code = ferry.JobNameAlreadyExists
	case ferry.QuotaExceeded:
		code = ferry.JobQuotaLimitReached
	case ferry.NotFound:
		code = ferry.JobItemNotFound
	case ferry.Invalid:
		code = ferry.JobInvalidRequest
	}
	return &failure{code: code, msg: ferry.Message(err), err: err}
}

// safeSentence capitalises a message and ends it with a period.
func safeSentence(s string) string {
	if s == "" {
		return "The download failed."
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}
