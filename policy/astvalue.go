package policy

import (
	"encoding"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The input document is built straight into OPA's values, without a JSON text in between:
// protoValue follows protojson (proto names, unpopulated fields emitted) and goValue follows
// encoding/json. Tests check both against the JSON route.

// protoValue converts a message as protojson.MarshalOptions{UseProtoNames: true,
// EmitUnpopulated: true} would, then decoded.
func protoValue(m protoreflect.Message) (ast.Value, error) {
	return protoValueWith(m, "", nil)
}

// protoValueWith is protoValue with the value of one top-level field supplied by the caller.
func protoValueWith(m protoreflect.Message, name protoreflect.Name, value ast.Value) (ast.Value, error) {
	md := m.Descriptor()
	if strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return viaProtoJSON(m) // well-known types have their own JSON forms
	}
	fields := md.Fields()
	items := make([][2]*ast.Term, 0, fields.Len())
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.ContainingOneof() != nil && !m.Has(fd) {
			continue // protojson does not emit unset oneof members (nor proto3 optionals)
		}
		var v ast.Value
		var err error
		switch {
		case value != nil && fd.Name() == name:
			v = value
		case fd.IsList():
			v, err = protoList(fd, m.Get(fd).List())
		case fd.IsMap():
			v, err = protoMap(fd, m.Get(fd).Map())
		case fd.Message() != nil && !m.Has(fd):
			v = ast.Null{}
		default:
			v, err = protoScalar(fd, m.Get(fd))
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fd.Name(), err)
		}
		items = append(items, [2]*ast.Term{ast.InternedTerm(string(fd.Name())), ast.NewTerm(v)})
	}
	return ast.NewObject(items...), nil
}

func protoList(fd protoreflect.FieldDescriptor, l protoreflect.List) (ast.Value, error) {
	terms := make([]*ast.Term, l.Len())
	for i := range terms {
		v, err := protoScalar(fd, l.Get(i))
		if err != nil {
			return nil, err
		}
		terms[i] = ast.NewTerm(v)
	}
	return ast.NewArray(terms...), nil
}

func protoMap(fd protoreflect.FieldDescriptor, mp protoreflect.Map) (ast.Value, error) {
	items := make([][2]*ast.Term, 0, mp.Len())
	var err error
	mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		var val ast.Value
		if val, err = protoScalar(fd.MapValue(), v); err != nil {
			return false
		}
		items = append(items, [2]*ast.Term{ast.StringTerm(k.String()), ast.NewTerm(val)})
		return true
	})
	if err != nil {
		return nil, err
	}
	return ast.NewObject(items...), nil
}

// protoScalar converts one value of fd's kind (an element, for a list).
func protoScalar(fd protoreflect.FieldDescriptor, v protoreflect.Value) (ast.Value, error) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return ast.Boolean(v.Bool()), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return ast.InternedValue(v.Int()), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return ast.InternedValue(v.Uint()), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return ast.String(strconv.FormatInt(v.Int(), 10)), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return ast.String(strconv.FormatUint(v.Uint(), 10)), nil
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return floatValue(v.Float()), nil
	case protoreflect.StringKind:
		return ast.String(v.String()), nil
	case protoreflect.BytesKind:
		return ast.String(base64.StdEncoding.EncodeToString(v.Bytes())), nil
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return ast.String(ev.Name()), nil
		}
		return ast.InternedValue(int64(v.Enum())), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return protoValue(v.Message())
	}
	return nil, fmt.Errorf("unsupported kind %v", fd.Kind())
}

func floatValue(f float64) ast.Value {
	switch {
	case math.IsNaN(f):
		return ast.String("NaN")
	case math.IsInf(f, 1):
		return ast.String("Infinity")
	case math.IsInf(f, -1):
		return ast.String("-Infinity")
	}
	return ast.Number(strconv.FormatFloat(f, 'g', -1, 64))
}

func viaProtoJSON(m protoreflect.Message) (ast.Value, error) {
	b, err := inputJSON.Marshal(m.Interface())
	if err != nil {
		return nil, err
	}
	return jsonValue(b)
}

// jsonValue parses a JSON text into a value, numbers kept exact.
func jsonValue(b []byte) (ast.Value, error) {
	var v any
	if err := util.UnmarshalJSON(b, &v); err != nil {
		return nil, err
	}
	return ast.InterfaceToValue(v)
}

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
)

// goValue converts v as encoding/json would encode it: struct fields by their json tags,
// omitempty honoured, nil slices, maps and pointers as null, []byte as base64. Types with
// their own JSON or text encoding take the JSON route.
func goValue(v reflect.Value) (ast.Value, error) {
	if v.IsValid() && ownEncoding(v.Type()) {
		if v.Kind() != reflect.Pointer && v.Kind() != reflect.Interface && v.CanAddr() {
			v = v.Addr()
		}
		if (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) && v.IsNil() {
			return ast.Null{}, nil
		}
		b, err := json.Marshal(v.Interface())
		if err != nil {
			return nil, err
		}
		return jsonValue(b)
	}
	switch v.Kind() {
	case reflect.Invalid:
		return ast.Null{}, nil
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return ast.Null{}, nil
		}
		return goValue(v.Elem())
	case reflect.Struct:
		return goStruct(v)
	case reflect.Map:
		return goMap(v)
	case reflect.Slice:
		if v.IsNil() {
			return ast.Null{}, nil
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return ast.String(base64.StdEncoding.EncodeToString(v.Bytes())), nil
		}
		return goArray(v)
	case reflect.Array:
		return goArray(v)
	case reflect.String:
		return ast.String(v.String()), nil
	case reflect.Bool:
		return ast.Boolean(v.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return ast.InternedValue(v.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if u := v.Uint(); u <= math.MaxInt64 {
			return ast.InternedValue(int64(u)), nil
		}
		return ast.Number(strconv.FormatUint(v.Uint(), 10)), nil
	case reflect.Float32, reflect.Float64:
		return ast.Number(strconv.FormatFloat(v.Float(), 'g', -1, 64)), nil
	}
	return nil, fmt.Errorf("cannot convert a %s", v.Type())
}

var encodingCache sync.Map // reflect.Type -> bool

// ownEncoding reports whether t (or *t) has its own JSON or text encoding.
func ownEncoding(t reflect.Type) bool {
	if b, ok := encodingCache.Load(t); ok {
		return b.(bool)
	}
	has := func(t reflect.Type) bool { return t.Implements(jsonMarshaler) || t.Implements(textMarshaler) }
	own := has(t) || (t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface && has(reflect.PointerTo(t)))
	encodingCache.Store(t, own)
	return own
}

func goArray(v reflect.Value) (ast.Value, error) {
	terms := newTerms(v.Len())
	for i := range terms {
		e, err := goValue(v.Index(i))
		if err != nil {
			return nil, err
		}
		terms[i].Value = e
	}
	return ast.NewArray(terms...), nil
}

// newTerms returns n empty terms allocated together: the input has hundreds of them.
func newTerms(n int) []*ast.Term {
	block := make([]ast.Term, n)
	terms := make([]*ast.Term, n)
	for i := range block {
		terms[i] = &block[i]
	}
	return terms
}

func goMap(v reflect.Value) (ast.Value, error) {
	if v.IsNil() {
		return ast.Null{}, nil
	}
	if v.Type().Key().Kind() != reflect.String {
		b, err := json.Marshal(v.Interface()) // integer or text keys: let encoding/json name them
		if err != nil {
			return nil, err
		}
		return jsonValue(b)
	}
	items := make([][2]*ast.Term, 0, v.Len())
	it := v.MapRange()
	for it.Next() {
		e, err := goValue(it.Value())
		if err != nil {
			return nil, err
		}
		items = append(items, [2]*ast.Term{ast.StringTerm(it.Key().String()), ast.NewTerm(e)})
	}
	return ast.NewObject(items...), nil
}

func goStruct(v reflect.Value) (ast.Value, error) {
	fields := structFields(v.Type())
	items := make([][2]*ast.Term, 0, len(fields))
	terms := newTerms(len(fields))
	for _, f := range fields {
		fv, ok := fieldByIndex(v, f.index)
		if !ok || (f.omitEmpty && isEmptyJSON(fv)) || (f.omitZero && fv.IsZero()) {
			continue
		}
		e, err := goValue(fv)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		t := terms[len(items)]
		t.Value = e
		items = append(items, [2]*ast.Term{f.key, t})
	}
	return ast.NewObject(items...), nil
}

// isEmptyJSON is encoding/json's notion of empty for omitempty (a struct is never empty).
func isEmptyJSON(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool:
		return !v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return v.Float() == 0
	case reflect.Interface, reflect.Pointer:
		return v.IsNil()
	}
	return false
}

// fieldByIndex follows an index path through embedded structs; false when it passes through
// a nil embedded pointer (encoding/json then omits the field).
func fieldByIndex(v reflect.Value, index []int) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, true
}

type structField struct {
	name      string
	key       *ast.Term
	index     []int
	omitEmpty bool
	omitZero  bool
}

var fieldCache sync.Map // reflect.Type -> []structField

// structFields lists the fields encoding/json encodes for t, embedded structs inlined.
// (encoding/json's rules for name conflicts between embedded fields are not followed: the
// types encoded here, runtime-spec's, have none.)
func structFields(t reflect.Type) []structField {
	if f, ok := fieldCache.Load(t); ok {
		return f.([]structField)
	}
	var out []structField
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" || (!sf.IsExported() && !sf.Anonymous) {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := sf.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if sf.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			for _, inner := range structFields(ft) {
				inner.index = append([]int{i}, inner.index...)
				out = append(out, inner)
			}
			continue
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		out = append(out, structField{name: name, key: ast.InternedTerm(name), index: []int{i},
			omitEmpty: strings.Contains(","+opts+",", ",omitempty,"),
			omitZero:  strings.Contains(","+opts+",", ",omitzero,")})
	}
	fieldCache.Store(t, out)
	return out
}
