package ferry

import "context"

type requestIDKey struct{}

// WithRequestID returns a context that carries the id of the API request
// it serves. A job enqueued under it keeps the id (Job.RequestID), so that
// the job's log lines lead back to the request that created it.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id WithRequestID put into ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
