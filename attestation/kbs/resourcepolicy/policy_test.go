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
			got, err := tt.p.Allow(ctx, tt.claims, tt.path, nil)
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
	if ok, err := p.Allow(context.Background(), nil, protocol.ResourcePath{Repository: "a", Type: "b", Tag: "c"}, nil); ok || err == nil {
		t.Fatalf("a string allow gave %v, %v", ok, err)
	}
}

func TestEngine(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "policy", "resource-policy.rego")
	e, err := Open(ctx, file, "")
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
	e2, err := Open(ctx, file, "")
	if err != nil || string(e2.Policy().Source()) != byPath {
		t.Fatalf("the policy set did not survive a reopen: %v", err)
	}
}

// tenantClaims are affirming claims of a guest whose measured initdata digest is initData.
func tenantClaims(initData string) map[string]any {
	return map[string]any{"submods": map[string]any{"cpu0": map[string]any{
		"ear.status": "affirming", "ear.veraison.annotated-evidence": map[string]any{"init_data": initData}}}}
}

// TestDefaultIsolatesTenants: the default policy releases a repository other than "default"
// only to guests whose initdata digest is bound to it, in SNP's form (the digest) and TDX's
// (the digest zero-padded to MRCONFIGID's 48 bytes).
func TestDefaultIsolatesTenants(t *testing.T) {
	ctx := context.Background()
	def, err := Compile(ctx, Default)
	if err != nil {
		t.Fatal(err)
	}
	a, b := strings.Repeat("aa", 32), strings.Repeat("bb", 32)
	tdxA := a + strings.Repeat("00", 16)
	sha384 := strings.Repeat("cc", 48)
	pb := protocol.ResourcePath{Repository: "tenantb", Type: "key", Tag: "1"}
	// default.rego spells the shared repository itself (Rego imports no Go): this case holds
	// the two spellings together.
	shared := protocol.ResourcePath{Repository: SharedRepository, Type: "key", Tag: "1"}
	two := map[string]any{"submods": map[string]any{
		"cpu0": map[string]any{"ear.status": "affirming", "ear.veraison.annotated-evidence": map[string]any{"init_data": b}},
		"cpu1": map[string]any{"ear.status": "affirming", "ear.veraison.annotated-evidence": map[string]any{"init_data": a}},
	}}
	for _, tt := range []struct {
		name   string
		claims map[string]any
		path   protocol.ResourcePath
		bound  []string
		want   bool
	}{
		{"shared repository, no binding", tenantClaims(a), shared, nil, true},
		{"unbound repository", tenantClaims(b), pb, nil, false},
		{"bound to the guest", tenantClaims(b), pb, []string{b}, true},
		{"bound to another tenant", tenantClaims(a), pb, []string{b}, false},
		{"one of several", tenantClaims(a), pb, []string{b, a}, true},
		{"TDX form of a sha256 digest", tenantClaims(tdxA), pb, []string{a}, true},
		{"sha384 digest in TDX", tenantClaims(sha384), pb, []string{sha384}, true},
		{"sha384 digest in SNP (truncated)", tenantClaims(sha384[:64]), pb, []string{sha384}, true},
		{"sha512 digest in TDX (truncated)", tenantClaims(strings.Repeat("dd", 48)), pb, []string{strings.Repeat("dd", 64)}, true},
		{"a prefix is not the digest", tenantClaims(a[:32]), pb, []string{a}, false},
		{"no init_data claim", claims("affirming"), pb, []string{b}, false},
		{"every submodule must match", two, pb, []string{b}, false},
		{"bound but not affirming", map[string]any{"submods": map[string]any{"cpu0": map[string]any{
			"ear.status": "warning", "ear.veraison.annotated-evidence": map[string]any{"init_data": b}}}}, pb, []string{b}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := def.Allow(ctx, tt.claims, tt.path, tt.bound)
			if err != nil || got != tt.want {
				t.Fatalf("Allow = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// TestBindings: Bind normalizes and stores the bindings, which survive a reopen; bad input
// changes nothing; a corrupt bindings file is refused at open, naming it.
func TestBindings(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pol, bfile := filepath.Join(dir, "resource-policy.rego"), filepath.Join(dir, "repository-bindings.json")
	e, err := Open(ctx, pol, bfile)
	if err != nil {
		t.Fatal(err)
	}
	a := strings.Repeat("AB", 32)
	if err := e.Bind("tenant", []string{a, strings.ToLower(a)}); err != nil {
		t.Fatal(err)
	}
	if got := e.Binding("tenant"); len(got) != 1 || got[0] != strings.ToLower(a) {
		t.Fatalf("Binding = %v, want one lowercased digest", got)
	}
	for _, bad := range []struct {
		repo    string
		digests []string
	}{{"tenant", []string{"abc"}}, {"../x", []string{a}}, {"a/b", []string{a}}, {"", []string{a}}} {
		if err := e.Bind(bad.repo, bad.digests); err == nil {
			t.Errorf("Bind(%q, %v) accepted", bad.repo, bad.digests)
		}
	}
	e2, err := Open(ctx, pol, bfile)
	if err != nil {
		t.Fatal(err)
	}
	if got := e2.Binding("tenant"); len(got) != 1 {
		t.Fatalf("after reopen: %v", got)
	}
	if err := e2.Bind("tenant", nil); err != nil || e2.Binding("tenant") != nil {
		t.Fatalf("unbind: %v, %v", err, e2.Binding("tenant"))
	}
	if err := os.WriteFile(bfile, []byte(`{"t": ["xyz"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, pol, bfile); err == nil || !strings.Contains(err.Error(), bfile) {
		t.Fatalf("a corrupt bindings file: %v", err)
	}
}
