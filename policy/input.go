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

// RequestDocument returns the request as the policy sees it under input.request: protobuf's
// JSON mapping with proto field names and every field present (so int64 and uint64 are
// strings, bytes are base64, enums are names, unset messages are null), and oci_spec decoded
// into an object (null when empty) in its canonical form: decoded into runtime-spec's Spec as
// the agent decodes it and encoded again, so fields the agent ignores are gone and empty ones
// are omitted.
func RequestDocument(req proto.Message) (map[string]any, error) {
	v, err := requestValue(req)
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

// requestValue is the request document in OPA's form.
func requestValue(req proto.Message) (ast.Value, error) {
	m := req.ProtoReflect()
	fd := m.Descriptor().Fields().ByName(specField)
	if fd == nil || fd.Kind() != protoreflect.BytesKind || fd.IsList() {
		return protoValue(m)
	}
	var spec ast.Value = ast.Null{}
	if raw := m.Get(fd).Bytes(); len(raw) > 0 {
		var err error
		if spec, err = canonicalSpec(raw); err != nil {
			return nil, err
		}
	}
	return protoValueWith(m, specField, spec)
}

// canonicalSpec decodes an OCI spec the way the agent does (encoding/json into runtime-spec's
// Spec, which matches field names case-insensitively and lets the last duplicate win) and
// returns what encoding it again would give. The policy so judges the spec the agent will
// run, not the bytes the host chose: a spec that reads one way to Rego and another to the
// agent cannot slip through.
func canonicalSpec(raw []byte) (ast.Value, error) {
	var s specs.Spec
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("%w: %s: not an OCI runtime spec: %w", ErrMalformedRequest, specField, err)
	}
	v, err := goValue(reflect.ValueOf(&s))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", specField, err)
	}
	return v, nil
}
