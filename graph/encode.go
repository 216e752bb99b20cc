package graph

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/ferrydrive/ferry"
)

// maxJSONBody caps every JSON request body (after gzip decoding).
const maxJSONBody = 1 << 20

// encode writes v as the JSON body of a response with the given status. It
// and decode are the only places that touch encoding/json.
func encode(w http.ResponseWriter, status int, v any) {
	b := marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// marshal is v as JSON, ending in a newline, as encode writes it and as
// event streams send it.
func marshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // names with < > & stay readable
	if err := enc.Encode(v); err != nil {
		// Every wire type marshals; reaching this is a programming error.
		panic(fmt.Sprintf("graph: encode %T: %v", v, err))
	}
	return buf.Bytes()
}

// selectFields reduces the JSON object of v to the keys listed in fields,
// always keeping "id" and any key in keep. With no fields it returns v
// unchanged.
func selectFields(v any, fields []string, keep ...string) any {
	if len(fields) == 0 {
		return v
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("graph: encode %T: %v", v, err))
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		panic(fmt.Sprintf("graph: select %T: %v", v, err))
	}
	out := make(map[string]json.RawMessage, len(fields)+1)
	for _, k := range append(append([]string{"id"}, keep...), fields...) {
		if raw, ok := all[k]; ok {
			out[k] = raw
		}
	}
	return out
}

// bodyReader returns the request body, decoded when the client sent
// Content-Encoding: gzip (the Go SDK does). Other encodings are refused.
func bodyReader(r *http.Request) (io.Reader, error) {
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	switch enc {
	case "", "identity":
		return r.Body, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, ferry.Errorf(ferry.Invalid, "the request body is not valid gzip")
		}
		return gzipErrors{zr}, nil
	}
	return nil, ferry.Errorf(ferry.Invalid, "Content-Encoding %q is not supported (use gzip or none)", enc)
}

// gzipErrors marks corrupt gzip data as the client's fault.
type gzipErrors struct{ r io.Reader }

func (g gzipErrors) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if err != nil && err != io.EOF && ferry.KindOf(err) == ferry.Internal {
		var me *http.MaxBytesError
		if !errors.As(err, &me) {
			err = &ferry.Error{Kind: ferry.Invalid, Message: "the request body is not valid gzip", Err: err}
		}
	}
	return n, err
}

// decode reads a JSON request body into a T. The body is required, capped
// at maxJSONBody (413 above), may be gzip-encoded, and may carry unknown
// fields; a field of the wrong type is a 400 that names it.
func decode[T any](r *http.Request) (T, error) {
	return decodeBody[T](r, false)
}

// decodeOptional is decode for requests whose body may be left out: an
// empty (or all white space) body gives the zero T.
func decodeOptional[T any](r *http.Request) (T, error) {
	return decodeBody[T](r, true)
}

func decodeBody[T any](r *http.Request, optional bool) (T, error) {
	var v T
	body, err := bodyReader(r)
	if err != nil {
		return v, err
	}
	data, err := io.ReadAll(io.LimitReader(body, maxJSONBody+1))
	if err != nil {
		if ferry.KindOf(err) != ferry.Internal {
			return v, err
		}
		return v, ferry.Errorf(ferry.Invalid, "the request body could not be read")
	}
	if len(data) > maxJSONBody {
		return v, ferry.Errorf(ferry.TooLarge, "the JSON body is larger than %d bytes", maxJSONBody).WithCode("maxRequestSizeExceeded")
	}
	if len(bytes.TrimSpace(data)) == 0 {
		if optional {
			return v, nil
		}
		return v, ferry.Errorf(ferry.Invalid, "a JSON request body is required")
	}
	if err := json.Unmarshal(data, &v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return v, ferry.Errorf(ferry.Invalid, "the body is not valid JSON (at byte %d)", syn.Offset)
		case errors.As(err, &typ) && typ.Field != "":
			return v, ferry.Errorf(ferry.Invalid, "the field %q must be a JSON %s, not %s", typ.Field, jsonType(typ.Type.Kind().String()), typ.Value)
		case errors.As(err, &typ):
			return v, ferry.Errorf(ferry.Invalid, "the body must be a JSON object, not %s", typ.Value)
		}
		return v, ferry.Errorf(ferry.Invalid, "the body is not valid JSON")
	}
	return v, nil
}

// jsonType names a Go reflect kind the way a JSON user thinks of it.
func jsonType(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "struct", "map", "ptr":
		return "object"
	case "slice", "array":
		return "array"
	case "bool":
		return "boolean"
	}
	return "number"
}

// decodeJSON parses a JSON document the server itself produced, such as
// an error body captured from a handler.
func decodeJSON(data []byte, v any) error { return json.Unmarshal(data, v) }
