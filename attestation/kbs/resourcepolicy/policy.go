// Package resourcepolicy decides which attested clients may read which KBS resource. A policy
// is a Rego module (OPA v1 syntax) in package "policy" with a boolean rule "allow", evaluated
// as Trustee evaluates it: input is the attestation token's claims and data is
// {"plugin", "resource-path": "/repo/type/tag", "query"}, plus Veil's
// "repository-init-data": the initdata digests the administrator bound to the requested
// resource's repository (in every form a token's init_data claim may take). The default
// policy (Default) isolates tenants: it allows a resource when every submodule of the token
// has the EAR status "affirming" and either the resource is in the shared repository
// ("default") or the guest's measured initdata digest is bound to its repository.
package resourcepolicy

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// Default is the policy used when none is configured.
//
//go:embed default.rego
var Default []byte

// MaxSize bounds the size of a policy module.
const MaxSize = 1 << 20

// query evaluates data.policy.allow with the request's data and the token's claims. The
// values of "with" are taken from the outer input before it is replaced.
const query = `data.policy.allow` +
	` with data.plugin as input.data.plugin` +
	` with data["resource-path"] as input.data["resource-path"]` +
	` with data.query as input.data.query` +
	` with data["repository-init-data"] as input.data["repository-init-data"]` +
	` with input as input.claims`

// Policy is one compiled resource policy. It is safe for concurrent use.
type Policy struct {
	src []byte
	pq  rego.PreparedEvalQuery
}

// Compile parses and prepares a policy module.
func Compile(ctx context.Context, src []byte) (*Policy, error) {
	if len(src) > MaxSize {
		return nil, fmt.Errorf("resource policy: %d bytes, at most %d", len(src), MaxSize)
	}
	pq, err := rego.New(rego.Query(query), rego.Module("resource-policy.rego", string(src))).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("resource policy: %w", err)
	}
	return &Policy{src: append([]byte(nil), src...), pq: pq}, nil
}

// Source returns the module text.
func (p *Policy) Source() []byte { return append([]byte(nil), p.src...) }

// Allow reports whether the token with these claims may read the resource; bound are the
// initdata digests bound to the resource's repository (Engine.Bind).
func (p *Policy) Allow(ctx context.Context, claims map[string]any, path protocol.ResourcePath, bound []string) (bool, error) {
	forms := claimForms(bound)
	in := map[string]any{
		"data": map[string]any{
			"plugin":               "resource",
			"resource-path":        "/" + path.String(),
			"query":                map[string]any{},
			"repository-init-data": forms,
		},
		"claims": claims,
	}
	rs, err := p.pq.Eval(ctx, rego.EvalInput(in))
	if err != nil {
		return false, fmt.Errorf("evaluate resource policy: %w", err)
	}
	if len(rs) == 0 {
		return false, nil // allow undefined: deny
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return false, errors.New("evaluate resource policy: unexpected result set")
	}
	allow, ok := rs[0].Expressions[0].Value.(bool)
	if !ok {
		return false, fmt.Errorf("evaluate resource policy: allow is %T, want a boolean", rs[0].Expressions[0].Value)
	}
	return allow, nil
}

// Engine holds the current policy and the repository bindings, and keeps each in a file, so
// what the administrator set survives a restart.
type Engine struct {
	file         string
	bindingsFile string
	mu           sync.RWMutex
	cur          *Policy
	bindings     bindingsFile
}

// Open loads the policy from file, writing Default there first if the file does not exist,
// and the repository bindings from bindingsFile (none while it does not exist; "" keeps
// them in memory only).
func Open(ctx context.Context, file, bindingsFile string) (*Engine, error) {
	b, err := readBindings(bindingsFile)
	if err != nil {
		return nil, err
	}
	src, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		if err := writeAtomic(file, Default); err != nil {
			return nil, err
		}
		src = Default
	} else if err != nil {
		return nil, fmt.Errorf("resource policy: %w", err)
	}
	p, err := Compile(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &Engine{file: file, bindingsFile: bindingsFile, cur: p, bindings: b}, nil
}

// Policy returns the current policy.
func (e *Engine) Policy() *Policy {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.cur
}

// Source returns the current policy's text.
func (e *Engine) Source() []byte { return e.Policy().Source() }

// Allow evaluates the current policy with the bindings of the resource's repository.
func (e *Engine) Allow(ctx context.Context, claims map[string]any, path protocol.ResourcePath) (bool, error) {
	return e.Policy().Allow(ctx, claims, path, e.Binding(path.Repository))
}

// Binding returns the initdata digests bound to repository (nil when none).
func (e *Engine) Binding(repository string) []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return slices.Clone(e.bindings[repository])
}

// Bind replaces the initdata digests bound to repository (an empty list removes the binding)
// and stores every binding in the engine's bindings file. Bad input changes nothing.
func (e *Engine) Bind(repository string, digests []string) error {
	if err := checkRepository(repository); err != nil {
		return err
	}
	norm, err := NormalizeDigests(digests)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	next := maps.Clone(e.bindings)
	if len(norm) == 0 {
		delete(next, repository)
	} else {
		next[repository] = norm
	}
	if e.bindingsFile != "" {
		data, err := json.MarshalIndent(next, "", "  ")
		if err != nil {
			return err
		}
		if err := writeAtomic(e.bindingsFile, data); err != nil {
			return err
		}
	}
	e.bindings = next
	return nil
}

// Set compiles src, stores it in the engine's file and makes it current. An invalid policy
// changes nothing.
func (e *Engine) Set(ctx context.Context, src []byte) error {
	p, err := Compile(ctx, src)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := writeAtomic(e.file, src); err != nil {
		return err
	}
	e.cur = p
	return nil
}

func writeAtomic(file string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	// A temporary name of its own: replicas sharing a data volume may write the same
	// default at their first start.
	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}
