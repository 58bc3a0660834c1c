package resourcepolicy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

func claims(statuses ...string) map[string]any {
	sub := map[string]any{}
	for i, s := range statuses {
		sub[string(rune('a'+i))] = map[string]any{"ear.status": s}
	}
	return map[string]any{"submods": sub}
}

const byPath = `package policy
import rego.v1
default allow := false
allow if {
	data["resource-path"] == "/default/key/1"
	input.submods.cpu0["ear.veraison.annotated-evidence"].init_data == "abcd"
}
`

func TestAllow(t *testing.T) {
	ctx := context.Background()
	def, err := Compile(ctx, Default)
	if err != nil {
		t.Fatal(err)
	}
	custom, err := Compile(ctx, []byte(byPath))
	if err != nil {
		t.Fatal(err)
	}
	p1 := protocol.ResourcePath{Repository: "default", Type: "key", Tag: "1"}
	p2 := protocol.ResourcePath{Repository: "default", Type: "key", Tag: "2"}
	withInit := map[string]any{"submods": map[string]any{"cpu0": map[string]any{
		"ear.veraison.annotated-evidence": map[string]any{"init_data": "abcd"}}}}
	tests := []struct {
		name   string
		p      *Policy
		claims map[string]any
		path   protocol.ResourcePath
		want   bool
	}{
		{"default affirming", def, claims("affirming"), p1, true},
		{"default two affirming", def, claims("affirming", "affirming"), p1, true},
		{"default warning", def, claims("affirming", "warning"), p1, false},
		{"default contraindicated", def, claims("contraindicated"), p1, false},
		{"default no submods", def, map[string]any{}, p1, false},
		{"default nil claims", def, nil, p1, false},
		{"custom path and initdata", custom, withInit, p1, true},
		{"custom other path", custom, withInit, p2, false},
		{"custom other initdata", custom, claims("affirming"), p1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.p.Allow(ctx, tt.claims, tt.path)
			if err != nil || got != tt.want {
				t.Fatalf("Allow = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestCompileRefusals(t *testing.T) {
	tests := []struct {
		name, src, wantErr string
	}{
		{"syntax", "package policy\nallow if {", "resource policy"},
		{"v0 syntax", "package policy\nallow { true }", "resource policy"},
		{"too big", strings.Repeat("#", MaxSize+1), "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(context.Background(), []byte(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestNonBooleanAllow(t *testing.T) {
	p, err := Compile(context.Background(), []byte("package policy\nallow := \"yes\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := p.Allow(context.Background(), nil, protocol.ResourcePath{Repository: "a", Type: "b", Tag: "c"}); ok || err == nil {
		t.Fatalf("a string allow gave %v, %v", ok, err)
	}
}

func TestEngine(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "policy", "resource-policy.rego")
	e, err := Open(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(file); string(got) != string(Default) {
		t.Fatal("the default policy was not written on first open")
	}
	if err := e.Set(ctx, []byte("package policy\nallow if {")); err == nil {
		t.Fatal("an invalid policy was set")
	}
	if err := e.Set(ctx, []byte(byPath)); err != nil {
		t.Fatal(err)
	}
	e2, err := Open(ctx, file)
	if err != nil || string(e2.Policy().Source()) != byPath {
		t.Fatalf("the policy set did not survive a reopen: %v", err)
	}
}
