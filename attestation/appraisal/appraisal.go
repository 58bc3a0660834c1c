// Package appraisal decides what verified claims are worth: it evaluates a Rego (OPA v1)
// appraisal policy over the claims and the reference values, and gives an EAR-style result:
// a status (affirming, warning, contraindicated), an AR4SI trustworthiness vector and the id of
// the policy. The default policy ships with the package (default.rego).
package appraisal

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/veil-runtime/veil/attestation/verifier"
)

// DefaultPolicy is the default appraisal policy.
//
//go:embed default.rego
var DefaultPolicy string

// DefaultPolicyID names DefaultPolicy in results and tokens.
const DefaultPolicyID = "policy:veil/default-appraisal"

// Query is what a policy must define: data.veil.appraisal.trustworthiness_vector (an object of
// AR4SI claims) and optionally data.veil.appraisal.reasons (a set of strings).
const Query = "data.veil.appraisal"

// Status is an EAR status.
type Status string

// The EAR statuses, from best to worst.
const (
	StatusNone            Status = "none"
	StatusAffirming       Status = "affirming"
	StatusWarning         Status = "warning"
	StatusContraindicated Status = "contraindicated"
)

// TrustworthinessClaims are the AR4SI trustworthiness vector's claim names.
var TrustworthinessClaims = []string{"instance-identity", "configuration", "executables", "file-system",
	"hardware", "runtime-opaque", "storage-opaque", "sourced-data"}

// Result is an appraisal.
type Result struct {
	Status                Status
	TrustworthinessVector map[string]int
	PolicyID              string
	// Reasons say why claims are not affirming, sorted.
	Reasons []string
}

// Options configure an Appraiser.
type Options struct {
	// Policy is a Rego module in package veil.appraisal; "" means DefaultPolicy.
	Policy string
	// PolicyID names the policy; "" means DefaultPolicyID for the default policy and
	// "sha256:<hex of the policy text>" for another.
	PolicyID string
	// Reference are the reference values; nil means none (the zero section for each TEE).
	Reference *ReferenceValues
}

// Appraiser evaluates one prepared policy; it is safe for concurrent use.
type Appraiser struct {
	vector   rego.PreparedEvalQuery // data.veil.appraisal.trustworthiness_vector
	reasons  rego.PreparedEvalQuery // data.veil.appraisal.reasons, evaluated when not affirming
	policyID string
	refs     map[string]ast.Value
}

// New compiles the policy and prepares the reference values.
func New(ctx context.Context, opts Options) (*Appraiser, error) {
	policy, id := opts.Policy, opts.PolicyID
	if policy == "" {
		policy = DefaultPolicy
		if id == "" {
			id = DefaultPolicyID
		}
	}
	if id == "" {
		sum := sha256.Sum256([]byte(policy))
		id = "sha256:" + hex.EncodeToString(sum[:])
	}
	if opts.Reference != nil {
		if err := opts.Reference.Validate(); err != nil {
			return nil, err
		}
	}
	a := &Appraiser{policyID: id, refs: map[string]ast.Value{}}
	for _, q := range []struct {
		dst   *rego.PreparedEvalQuery
		query string
	}{{&a.vector, Query + ".trustworthiness_vector"}, {&a.reasons, Query + ".reasons"}} {
		prepared, err := rego.New(rego.Query(q.query), rego.Module("appraisal.rego", policy)).PrepareForEval(ctx)
		if err != nil {
			return nil, fmt.Errorf("appraisal policy %s: %w", id, err)
		}
		*q.dst = prepared
	}
	for _, tee := range []string{"snp", "tdx"} {
		v, err := ast.InterfaceToValue(opts.Reference.regoInput(tee))
		if err != nil {
			return nil, fmt.Errorf("reference values: %w", err)
		}
		a.refs[tee] = v
	}
	return a, nil
}

// PolicyID returns the id results carry.
func (a *Appraiser) PolicyID() string { return a.policyID }

// Appraise evaluates the policy over verified claims.
func (a *Appraiser) Appraise(ctx context.Context, c *verifier.Claims) (*Result, error) {
	if c == nil {
		return nil, errors.New("appraisal: no claims")
	}
	ref, ok := a.refs[c.TEE]
	if !ok {
		return nil, fmt.Errorf("appraisal: no reference section for TEE %q", c.TEE)
	}
	claims, err := ast.InterfaceToValue(c.Raw)
	if err != nil {
		return nil, fmt.Errorf("appraisal: claims: %w", err)
	}
	input := ast.NewObject(
		[2]*ast.Term{ast.StringTerm("tee"), ast.StringTerm(c.TEE)},
		[2]*ast.Term{ast.StringTerm("claims"), ast.NewTerm(claims)},
		[2]*ast.Term{ast.StringTerm("reference"), ast.NewTerm(ref)},
	)
	vector, err := evalOne(ctx, a.vector, input)
	if err != nil {
		return nil, fmt.Errorf("appraisal policy %s: %w", a.policyID, err)
	}
	res, err := a.result(vector)
	if err != nil || res.Status == StatusAffirming {
		return res, err
	}
	reasons, err := evalOne(ctx, a.reasons, input)
	if err != nil {
		return nil, fmt.Errorf("appraisal policy %s: %w", a.policyID, err)
	}
	if list, ok := reasons.([]any); ok {
		for _, r := range list {
			res.Reasons = append(res.Reasons, fmt.Sprint(r))
		}
		sort.Strings(res.Reasons)
	}
	return res, nil
}

// evalOne returns the value of a single-expression query, or nil when it is undefined.
func evalOne(ctx context.Context, q rego.PreparedEvalQuery, input ast.Value) (any, error) {
	rs, err := q.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil || len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, err
	}
	return rs[0].Expressions[0].Value, nil
}

// result reads and checks the trustworthiness vector.
func (a *Appraiser) result(out any) (*Result, error) {
	vec, ok := out.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("appraisal policy %s: %s.trustworthiness_vector is not an object", a.policyID, Query)
	}
	res := &Result{PolicyID: a.policyID, TrustworthinessVector: map[string]int{}, Status: StatusNone}
	for name, v := range vec {
		n, err := claimValue(v)
		if err != nil || !contains(TrustworthinessClaims, name) {
			return nil, fmt.Errorf("appraisal policy %s: trustworthiness_vector[%q] = %v is not an AR4SI claim (%v)", a.policyID, name, v, err)
		}
		res.TrustworthinessVector[name] = n
		if s := tier(n); rank(s) > rank(res.Status) {
			res.Status = s
		}
	}
	return res, nil
}

func claimValue(v any) (int, error) {
	num, ok := v.(json.Number)
	if !ok {
		return 0, errors.New("not a number")
	}
	n, err := num.Int64()
	if err != nil || n < -128 || n > 127 {
		return 0, errors.New("not an integer in -128..127")
	}
	return int(n), nil
}

// tier maps an AR4SI claim value to its tier; unknown values count as contraindicated.
func tier(n int) Status {
	switch {
	case n >= -1 && n <= 1:
		return StatusNone
	case n >= 2 && n <= 31:
		return StatusAffirming
	case n >= 32 && n <= 95:
		return StatusWarning
	default:
		return StatusContraindicated
	}
}

func rank(s Status) int {
	switch s {
	case StatusAffirming:
		return 1
	case StatusWarning:
		return 2
	case StatusContraindicated:
		return 3
	default:
		return 0
	}
}
