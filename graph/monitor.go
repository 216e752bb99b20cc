package graph

import (
	"log/slog"
	"net/http"
	"net/url"

	"github.com/ferrydrive/ferry"
)

// jobStatus is the monitor's body: Graph's asyncJobStatus plus Ferry's
// byte counters. It never carries the source URL, which may hold a
// signature, since the monitor needs no token.
type jobStatus struct {
	Operation          string    `json:"operation"`
	Status             string    `json:"status"`
	PercentageComplete float64   `json:"percentageComplete"`
	BytesTransferred   int64     `json:"bytesTransferred"`
	TotalBytes         *int64    `json:"totalBytes,omitempty"`
	BytesPerSecond     float64   `json:"bytesPerSecond"`
	StatusDescription  string    `json:"statusDescription,omitempty"`
	ResourceID         string    `json:"resourceId,omitempty"`
	ID                 string    `json:"id,omitempty"`
	ResourceLocation   string    `json:"resourceLocation,omitempty"`
	ErrorCode          string    `json:"errorCode,omitempty"`
	Message            string    `json:"message,omitempty"`
	Error              *jobError `json:"error,omitempty"`
}

type jobError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// failedStatus maps a failed job's error code to the monitor's status code.
// Codes not listed (generalException, …) answer 500. Never a 2xx: the .NET
// SDK would read any 2xx but 202 as success. A source or target that was
// not found (itemNotFound) answers 400, not 404, so that no client takes
// the failure for an expired monitor.
var failedStatus = map[ferry.JobErrorCode]int{
	ferry.JobInvalidRequest:      http.StatusBadRequest,
	ferry.JobItemNotFound:        http.StatusBadRequest,
	ferry.JobAccessDenied:        http.StatusForbidden,
	ferry.JobNameAlreadyExists:   http.StatusConflict,
	ferry.JobMaxFileSizeExceeded: http.StatusRequestEntityTooLarge,
	ferry.JobTimeout:             http.StatusGatewayTimeout,
	ferry.JobQuotaLimitReached:   http.StatusInsufficientStorage,
	ferry.JobInsufficientStorage: http.StatusInsufficientStorage,
	ferry.JobNotSupported:        http.StatusNotImplemented,
}

// monitorAnswer renders a job as the monitor shows it, with the status code
// DESIGN.md §3 fixes: 202 while it runs, 200 completed, 410 cancelled, and
// the failedStatus table when it failed.
func monitorAnswer(r *http.Request, urls *urlBuilder, j *ferry.Job) (int, jobStatus) {
	s := jobStatus{
		Operation:          string(j.Operation),
		Status:             string(j.Status),
		PercentageComplete: j.Percentage(),
		BytesTransferred:   j.Bytes,
		BytesPerSecond:     j.BytesPerSecond,
	}
	if j.Total >= 0 {
		total := j.Total
		s.TotalBytes = &total
	}
	switch j.Status {
	case ferry.StatusCompleted:
		s.ResourceID = string(j.ResourceID)
		s.ID = string(j.ResourceID)
		s.StatusDescription = "The operation completed."
		if j.Operation == ferry.OpDownloadURL {
			s.StatusDescription = "URL was successfully downloaded to target"
		}
		if j.ResourceID != "" && j.DriveID != "" {
			s.ResourceLocation = urls.abs(r, apiVersion(r)+"/drives/"+url.PathEscape(string(j.DriveID))+"/items/"+url.PathEscape(string(j.ResourceID)))
		}
		return http.StatusOK, s
	case ferry.StatusFailed:
		code := j.ErrorCode
		if code == "" {
			code = ferry.JobGeneralException
		}
		msg := j.ErrorMessage
		if msg == "" {
			msg = "The operation failed."
		}
		s.ErrorCode, s.StatusDescription, s.Message = string(code), msg, msg
		s.Error = &jobError{Code: string(code), Message: msg}
		status, ok := failedStatus[code]
		if !ok {
			status = http.StatusInternalServerError
		}
		return status, s
	case ferry.StatusWaiting:
		s.StatusDescription = j.ErrorMessage // why it waits, if known
	case ferry.StatusCancelled:
		s.StatusDescription = j.ErrorMessage
		if s.StatusDescription == "" {
			s.StatusDescription = "The operation was cancelled."
		}
		return http.StatusGone, s
	}
	return http.StatusAccepted, s
}

// errNoMonitor is the answer for a monitor that never existed or has
// expired; ids that no monitor can have get it too, before any store call.
func errNoMonitor() error {
	return ferry.Errorf(ferry.NotFound, "the monitor does not exist or has expired")
}

// handleGetMonitor answers GET /monitor/{id}. The unguessable id is the
// only credential; an Authorization header is ignored. Never a redirect.
// With Accept: text/event-stream it answers an event stream of the same
// JSON (streamMonitor), 200 in every state.
func handleGetMonitor(log *slog.Logger, jobs ferry.JobQueue, urls *urlBuilder, st *streamer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !cleanText(id) {
			writeError(w, r, log, errNoMonitor())
			return
		}
		j, err := jobs.Job(r.Context(), id)
		if err != nil {
			if ferry.KindOf(err) == ferry.NotFound {
				err = errNoMonitor()
			}
			writeError(w, r, log, err)
			return
		}
		if wantsEventStream(r) && r.Method == http.MethodGet {
			st.streamMonitor(w, r, jobs, urls, j)
			return
		}
		status, body := monitorAnswer(r, urls, j)
		writeMonitor(w, status, body)
	})
}

// handleCancelMonitor answers DELETE /monitor/{id}: it asks the job to
// stop and answers 202 with its status (cancelPending, or cancelled for a
// job that had not started). A finished job gives 409.
func handleCancelMonitor(log *slog.Logger, jobs ferry.JobQueue, urls *urlBuilder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !cleanText(id) {
			writeError(w, r, log, errNoMonitor())
			return
		}
		j, err := jobs.Cancel(r.Context(), id)
		if err != nil {
			switch ferry.KindOf(err) {
			case ferry.NotFound:
				err = errNoMonitor()
			case ferry.Conflict:
				err = ferry.Errorf(ferry.Conflict, "the operation has already finished")
			}
			writeError(w, r, log, err)
			return
		}
		_, body := monitorAnswer(r, urls, j)
		writeMonitor(w, http.StatusAccepted, body)
	})
}

func writeMonitor(w http.ResponseWriter, status int, body jobStatus) {
	w.Header().Set("Cache-Control", "no-store")
	if status == http.StatusAccepted {
		w.Header().Set("Retry-After", "1")
	}
	encode(w, status, body)
}
