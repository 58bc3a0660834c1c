package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/open-policy-agent/opa/v1/ast"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// inputJSON is the request's JSON form: proto field names, every field present. The input
// is built without it (astvalue.go) but must equal what it gives.
var inputJSON = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// specField is the bytes field that carries an OCI spec as JSON; the input holds it decoded.
const specField = "oci_spec"

// Request is one request to the agent read once: the message and, for a request that carries
// an OCI spec (CreateContainer's oci_spec), that spec decoded as the agent decodes it. The
// engine judges this value and the agent then runs the very spec it judged (SpecFrom), so the
// spec is decoded once per request, not once for the policy and again for the handler.
type Request struct {
	// Method is the method's short name ("CreateContainer") or its full ttrpc name.
	Method string
	// Message is the request.
	Message proto.Message
	// Spec is the decoded oci_spec; nil when the request has no such field or it is empty.
	Spec *specs.Spec

	err error // why the spec could not be decoded (ErrMalformedRequest); judged as a denial
}

// ReadRequest reads req, the request of method, decoding its OCI spec if it carries one. A
// spec that does not decode is not an error here: judging the Request denies it with an
// error that wraps ErrMalformedRequest (Err returns it already).
func ReadRequest(method string, req proto.Message) *Request {
	r := &Request{Method: method, Message: req}
	if req == nil {
		return r
	}
	m := req.ProtoReflect()
	fd := specFieldOf(m)
	if fd == nil {
		return r
	}
	if raw := m.Get(fd).Bytes(); len(raw) > 0 {
		r.Spec, r.err = DecodeSpec(raw)
	}
	return r
}

// Err is why the request's spec could not be decoded (wrapping ErrMalformedRequest), or nil.
func (r *Request) Err() error { return r.err }

// DecodeSpec decodes an OCI spec the way the agent does: encoding/json into runtime-spec's
// Spec, which matches field names case-insensitively and lets the last duplicate win. The
// policy so judges the spec the agent will run, not the bytes the host chose: a spec that
// reads one way to Rego and another to the agent cannot slip through. An error wraps
// ErrMalformedRequest.
func DecodeSpec(raw []byte) (*specs.Spec, error) {
	var s specs.Spec
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("%w: %s: not an OCI runtime spec: %w", ErrMalformedRequest, specField, err)
	}
	return &s, nil
}

// specFieldOf is m's oci_spec field, nil when it has none.
func specFieldOf(m protoreflect.Message) protoreflect.FieldDescriptor {
	fd := m.Descriptor().Fields().ByName(specField)
	if fd == nil || fd.Kind() != protoreflect.BytesKind || fd.IsList() {
		return nil
	}
	return fd
}

// RequestDocument returns the request as the policy sees it under input.request: protobuf's
// JSON mapping with proto field names and every field present (so int64 and uint64 are
// strings, bytes are base64, enums are names, unset messages are null), and oci_spec decoded
// into an object (null when empty) in its canonical form: decoded into runtime-spec's Spec as
// the agent decodes it and encoded again, so fields the agent ignores are gone and empty ones
// are omitted.
func RequestDocument(req proto.Message) (map[string]any, error) {
	r := ReadRequest("", req)
	if r.err != nil {
		return nil, r.err
	}
	v, err := requestValue(r)
	if err != nil {
		return nil, err
	}
	doc, err := ast.JSON(v)
	if err != nil {
		return nil, err
	}
	return doc.(map[string]any), nil
}

// ErrMalformedRequest marks a request the engine cannot even turn into an input document (an
// oci_spec that is not an OCI spec): it is refused, and the interceptor says InvalidArgument
// rather than PermissionDenied, since no policy was consulted.
var ErrMalformedRequest = errors.New("malformed request")

// requestValue is the request document in OPA's form, its spec converted from r.Spec (what
// encoding it as JSON would give) rather than decoded again.
func requestValue(r *Request) (ast.Value, error) {
	m := r.Message.ProtoReflect()
	if specFieldOf(m) == nil {
		return protoValue(m)
	}
	var spec ast.Value = ast.Null{}
	if r.Spec != nil {
		var err error
		if spec, err = goValue(reflect.ValueOf(r.Spec)); err != nil {
			return nil, fmt.Errorf("%s: %w", specField, err)
		}
	}
	return protoValueWith(m, specField, spec)
}
