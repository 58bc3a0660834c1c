package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseResourcePath(t *testing.T) {
	tests := []struct {
		in      string
		want    ResourcePath
		wantErr string
	}{
		{"default/key/1", ResourcePath{"default", "key", "1"}, ""},
		{"123--_default/1Abff-_/___-afds44BC", ResourcePath{"123--_default", "1Abff-_", "___-afds44BC"}, ""},
		{"1.ok/2ok./3...", ResourcePath{"1.ok", "2ok.", "3..."}, ""},
		{"/repo/type/tag", ResourcePath{}, "empty segment"},
		{"1/2", ResourcePath{}, "want repository/type/tag"},
		{"a/b/c/d", ResourcePath{}, "not allowed"},
		{".1.ok/2ok./3...", ResourcePath{}, "not allowed"},
		{"a/../c", ResourcePath{}, "not allowed"},
		{"a/b/..", ResourcePath{}, "not allowed"},
		{"a/b/c%2F", ResourcePath{}, "not allowed"},
		{"a/b/" + strings.Repeat("x", 129), ResourcePath{}, "longer than"},
		{"a/b/", ResourcePath{}, "empty segment"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseResourcePath(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidPath) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want || got.String() != tt.in {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}

func TestParseResourceURI(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{"kbs:///default/key/1", ""},
		{"kbs://kbs.example/default/key/1", "host"},
		{"https:///default/key/1", "want kbs:///"},
		{"kbs:///default/key", "want repository/type/tag"},
		{"kbs:///default/../1", "not allowed"},
		{"kbs:///default/key/1?x=y", "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParseResourceURI(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || p.URI() != tt.in {
				t.Fatalf("got %v, %v", p, err)
			}
		})
	}
}

func TestErrorKind(t *testing.T) {
	var e ErrorInfo
	if err := json.Unmarshal([]byte(`{"type":"https://github.com/confidential-containers/kbs/errors/PolicyDeny","detail":"x"}`), &e); err != nil {
		t.Fatal(err)
	}
	if e.Kind() != PolicyDeny || PolicyDeny.Type() != e.Type {
		t.Fatalf("Kind = %q", e.Kind())
	}
	if (ErrorInfo{Type: "about:blank"}).Kind() != "" {
		t.Fatal("a foreign type was given a kind")
	}
}

func FuzzParseResourceURI(f *testing.F) {
	f.Add("kbs:///default/key/1")
	f.Add("kbs:///a/../b")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseResourceURI(s)
		if err != nil {
			return
		}
		for _, seg := range []string{p.Repository, p.Type, p.Tag} {
			if seg == "" || strings.ContainsAny(seg, "/\\\x00") || strings.HasPrefix(seg, ".") {
				t.Fatalf("accepted segment %q of %q", seg, s)
			}
		}
	})
}
