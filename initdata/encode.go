package initdata

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Annotation is the pod annotation that carries initdata in the Kata ecosystem:
// base64(gzip(TOML)).
const Annotation = "io.katacontainers.config.hypervisor.cc_init_data"

// Marshal writes an initdata document: version, algorithm and the data table with its keys
// sorted. Multi-line values are written as TOML literal strings, so that a policy stays
// readable in the document.
func Marshal(algorithm string, data map[string]string) ([]byte, error) {
	if _, err := newHash(algorithm); err != nil {
		return nil, fmt.Errorf("initdata: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version = %q\nalgorithm = %q\n\n[data]\n", Version, algorithm)
	for _, k := range slices.Sorted(maps.Keys(data)) {
		v := data[k]
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("initdata: data.%q: not valid UTF-8", k)
		}
		fmt.Fprintf(&b, "%s = %s\n", basicString(k), tomlString(v))
	}
	raw := []byte(b.String())
	if _, err := Parse(raw); err != nil {
		return nil, fmt.Errorf("initdata: the document written does not parse back: %w", err)
	}
	return raw, nil
}

// tomlString quotes v: as a multi-line literal string when it can be one, else as a basic
// string with escapes.
func tomlString(v string) string {
	literal := strings.Contains(v, "\n") && !strings.Contains(v, "'''") && !strings.HasSuffix(v, "'")
	for _, r := range v {
		if r != '\t' && r != '\n' && (r < 0x20 || r == 0x7f) {
			literal = false
		}
	}
	if strings.Contains(v, "\r") {
		literal = false
	}
	if literal {
		return "'''\n" + v + "'''"
	}
	return basicString(v)
}

// basicString is a TOML basic string: Go's quoting minus the escapes TOML lacks.
func basicString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\u00` + strconv.FormatInt(int64(r)>>4, 16) + strconv.FormatInt(int64(r)&0xf, 16))
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// EncodeAnnotation returns the annotation value for a document: base64(gzip(raw)).
func EncodeAnnotation(raw []byte) (string, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return "", fmt.Errorf("initdata annotation: %w", err)
	}
	if _, err := zw.Write(raw); err != nil {
		return "", fmt.Errorf("initdata annotation: compress: %w", err)
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("initdata annotation: compress: %w", err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// DecodeAnnotation returns the document bytes an annotation value carries. It refuses a value
// that decompresses to more than MaxDocumentSize (a gzip bomb) without inflating it further.
func DecodeAnnotation(value string) ([]byte, error) {
	value = strings.TrimSpace(value)
	if len(value) > base64.StdEncoding.EncodedLen(MaxDocumentSize) {
		return nil, fmt.Errorf("initdata annotation %s: %d bytes of base64, more than allowed", Annotation, len(value))
	}
	zipped, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		zipped, err = base64.RawStdEncoding.DecodeString(value)
	}
	if err != nil {
		return nil, fmt.Errorf("initdata annotation %s: not base64: %w", Annotation, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(zipped))
	if err != nil {
		return nil, fmt.Errorf("initdata annotation %s: not gzip: %w", Annotation, err)
	}
	defer zr.Close()
	raw, err := io.ReadAll(io.LimitReader(zr, MaxDocumentSize+1))
	if err != nil {
		return nil, fmt.Errorf("initdata annotation %s: decompress: %w", Annotation, err)
	}
	if len(raw) > MaxDocumentSize {
		return nil, fmt.Errorf("initdata annotation %s: decompresses to more than %d bytes", Annotation, MaxDocumentSize)
	}
	return raw, nil
}
