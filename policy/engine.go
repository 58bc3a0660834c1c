// Package policy judges every request that the host sends to the agent against an OPA (Rego)
// policy, the policy whose digest the TEE measured at launch (see the initdata package).
//
// The policy is one Rego v1 module in package agent_policy. For each request the engine
// evaluates the rule named after the request's protobuf message type,
// data.agent_policy.<RequestType> (CreateContainerRequest, ExecProcessRequest, ...), with the
// input document
//
//	{"method": "<Method>", "request": <the request as JSON>, "state": <the state document>}
//
// The request is protobuf's JSON mapping with the proto field names (snake_case) and every
// field present (absent ones at their zero value); CreateContainerRequest.oci_spec is decoded
// into the OCI spec object itself. The rule allows the request only when it evaluates to true
// or to an object whose "allow" is true; a missing rule, an undefined value, an evaluation
// error or anything else denies. An object result may carry "reason" (the text of a denial)
// and "state" (a JSON merge patch, RFC 7386), so later requests are judged against earlier
// ones. The state changes only once the request was allowed and carried out: Judge decides
// without touching the state, and Commit applies the decision's patch after the handler
// succeeded (the Interceptor does both), so a request that the agent then refuses (a
// container id already in use, say) leaves the policy's state as it was.
//
// Interceptor plugs an Engine into the agent's ttrpc server. policy/policies holds the
// shipped policies, the top-level initdata package the measured configuration that carries
// a policy, and policy/genpolicy makes a policy from a pod's YAML. docs/policy.md is the
// user's guide.
package policy

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"google.golang.org/protobuf/proto"
)

// Package is the Rego package every agent policy declares.
const Package = "agent_policy"

// DefaultFilename names the policy in error messages when no other name is given.
const DefaultFilename = "policy.rego"

// excludedBuiltins are the built-in functions a guest policy may not call: they reach the
// network or the agent's environment, and a policy must be a pure function of its input.
var excludedBuiltins = map[string]bool{
	"http.send": true, "net.lookup_ip_addr": true, "opa.runtime": true,
}

// Engine evaluates requests against a compiled policy and keeps the state document. It is
// safe for concurrent use.
type Engine struct {
	filename string
	log      *DecisionLog

	compiled atomic.Pointer[compiled]
	state    atomic.Pointer[stateDoc]
	stateMu  sync.Mutex // serialises state updates (readers use the atomic snapshot)
}

// compiled is one policy: its module compiled (so a policy that does not compile is refused
// at once), and each rule's query prepared when the first request of that rule comes (so the
// agent's start pays only for the module, and for the rules the host calls).
type compiled struct {
	compiler *ast.Compiler
	store    storage.Store
	queries  map[string]*ruleQuery // by rule name; only the rules the policy defines
	prepMu   sync.Mutex            // one preparation at a time: they share the compiler
}

// ruleQuery is the query data.agent_policy.<rule>, prepared once.
type ruleQuery struct {
	ref  ast.Ref
	once sync.Once
	pq   *rego.PreparedEvalQuery
	err  error
}

// query returns the prepared query of rule (nil when the policy has no such rule).
func (c *compiled) query(rule string) (*rego.PreparedEvalQuery, error) {
	q := c.queries[rule]
	if q == nil {
		return nil, nil
	}
	q.once.Do(func() {
		c.prepMu.Lock()
		defer c.prepMu.Unlock()
		pq, err := rego.New(
			rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(q.ref)))),
			rego.Compiler(c.compiler),
			rego.Store(c.store),
		).PrepareForEval(context.Background())
		if err != nil {
			q.err = fmt.Errorf("prepare rule %s: %w", rule, err)
			return
		}
		q.pq = &pq
	})
	return q.pq, q.err
}

// capabilities are OPA's built-ins but excludedBuiltins, made once (OPA builds and sorts the
// list on every call): the compilers only read them.
var capabilities = sync.OnceValue(func() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	caps.Builtins = slices.DeleteFunc(caps.Builtins, func(b *ast.Builtin) bool { return excludedBuiltins[b.Name] })
	return caps
})

// ruleRef is data.agent_policy.<rule>, built without the parser.
func ruleRef(rule ...string) ast.Ref {
	ref := ast.Ref{ast.DefaultRootDocument, ast.StringTerm(Package)}
	for _, r := range rule {
		ref = append(ref, ast.StringTerm(r))
	}
	return ref
}

// Option configures an Engine.
type Option func(*Engine)

// WithDecisionLog records every decision in l.
func WithDecisionLog(l *DecisionLog) Option { return func(e *Engine) { e.log = l } }

// WithFilename names the policy in compile errors ("initdata:policy.rego:12: ...").
func WithFilename(name string) Option { return func(e *Engine) { e.filename = name } }

// New compiles regoText and prepares one query per request type. A syntax or compile error
// names the place: "policy.rego:12: rego_parse_error: ...".
func New(regoText string, opts ...Option) (*Engine, error) {
	e := &Engine{filename: DefaultFilename}
	for _, o := range opts {
		o(e)
	}
	c, err := compile(e.filename, regoText)
	if err != nil {
		return nil, err
	}
	e.compiled.Store(c)
	e.state.Store(emptyState())
	return e, nil
}

// Replace compiles regoText and, when it compiles, makes it the policy for every later
// decision (SetPolicy). The state document is kept. On an error the old policy stays.
func (e *Engine) Replace(regoText string) error {
	c, err := compile(e.filename, regoText)
	if err != nil {
		return err
	}
	e.compiled.Store(c)
	return nil
}

// State returns the current state document. The caller must not modify it.
func (e *Engine) State() map[string]any { return e.state.Load().value }

func compile(filename, text string) (*compiled, error) {
	mod, err := ast.ParseModuleWithOpts(filename, text, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, fmt.Errorf("parse policy: %w", err)
	}
	if mod == nil {
		return nil, fmt.Errorf("parse policy: %s: empty module, want package %s", filename, Package)
	}
	if want := ruleRef(); !mod.Package.Path.Equal(want) {
		return nil, fmt.Errorf("policy %s:%d: package is %v, want package %s",
			filename, mod.Package.Location.Row, mod.Package.Path, Package)
	}
	compiler := ast.NewCompiler().WithCapabilities(capabilities())
	compiler.Compile(map[string]*ast.Module{filename: mod})
	if compiler.Failed() {
		return nil, fmt.Errorf("compile policy: %w", compiler.Errors)
	}
	c := &compiled{compiler: compiler, store: inmem.New(), queries: map[string]*ruleQuery{}}
	for _, m := range methodTable() {
		if _, done := c.queries[m.Rule]; done {
			continue
		}
		ref := ruleRef(m.Rule)
		if len(compiler.GetRules(ref)) == 0 {
			continue // missing rule: every request of this type is denied
		}
		c.queries[m.Rule] = &ruleQuery{ref: ref}
	}
	return c, nil
}

// Judge judges req, the request of method (its short name "ExecProcess" or its full ttrpc
// name), against the current state, which it leaves as it is: an allowed decision carries the
// policy's state patch, for Commit once the request has been carried out. It always returns a
// Decision; a non-nil error says why the decision is a denial that the policy itself did not
// make (unknown method, bad request, evaluation error), and Decision.Allow is then false.
// It is ReadRequest followed by JudgeRequest.
func (e *Engine) Judge(ctx context.Context, method string, req proto.Message) (Decision, error) {
	return e.JudgeRequest(ctx, ReadRequest(method, req))
}

// JudgeRequest is Judge for a request already read (its spec decoded once, by the caller that
// then runs it): the decision is the policy's own cost, the conversion of the request into
// OPA's values and the evaluation.
func (e *Engine) JudgeRequest(ctx context.Context, r *Request) (Decision, error) {
	start := time.Now()
	d, err := e.decide(ctx, r)
	if e.log != nil {
		e.log.record(start, d, r.Message)
	}
	return d, err
}

// Commit applies the state patch of d, an allowed decision of Judge whose request the agent
// carried out. A denial, or a decision without a patch, changes nothing.
func (e *Engine) Commit(d Decision) error {
	if !d.Allow || d.statePatch == nil {
		return nil
	}
	if err := e.applyState(d.statePatch); err != nil {
		return fmt.Errorf("apply state from %s: %w", d.Rule, err)
	}
	return nil
}

// Decide is Judge followed at once by Commit: for a caller that judges a request it does not
// carry out itself (tests, benchmarks, tools that replay requests). The Decision's
// StateChanged says whether the state moved.
func (e *Engine) Decide(ctx context.Context, method string, req proto.Message) (Decision, error) {
	d, err := e.Judge(ctx, method, req)
	if err != nil {
		return d, err
	}
	if err := e.Commit(d); err != nil {
		d.Allow, d.Reason = false, err.Error()
		return d.final(), err
	}
	return d, nil
}

func (e *Engine) decide(ctx context.Context, r *Request) (Decision, error) {
	method, req := r.Method, r.Message
	m, ok := lookup(method)
	if !ok {
		return deny(Decision{Method: method, Rule: "unknown"}, "%q is not a method of the agent API", method)
	}
	d := Decision{Method: m.Name, Rule: m.Rule, Withhold: m.Withhold}
	if req == nil || req.ProtoReflect().Descriptor().FullName() != m.input.Descriptor().FullName() {
		return deny(d, "request is not a %s", m.Rule)
	}
	pq, err := e.compiled.Load().query(m.Rule)
	if err != nil {
		return deny(d, "%w", err)
	}
	if pq == nil {
		d.Reason = fmt.Sprintf("the policy has no rule %s", m.Rule)
		return d.final(), nil
	}
	if r.err != nil {
		return deny(d, "%w", r.err)
	}
	reqValue, err := requestValue(r)
	if err != nil {
		return deny(d, "%w", err)
	}
	st := e.state.Load()
	input := ast.NewObject(
		ast.Item(ast.InternedTerm("method"), ast.StringTerm(m.Name)),
		ast.Item(ast.InternedTerm("request"), ast.NewTerm(reqValue)),
		ast.Item(ast.InternedTerm("state"), ast.NewTerm(st.ast)),
	)
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return deny(d, "evaluate %s: %w", m.Rule, err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		d.Reason = fmt.Sprintf("rule %s is undefined for this request", m.Rule)
		return d.final(), nil
	}
	res := interpret(rs[0].Expressions[0].Value)
	d.Allow, d.Reason = res.allow, res.reason
	if d.Allow && res.state != nil {
		d.statePatch, d.StateChanged = res.state, true
	}
	if d.Allow && len(res.obligations) > 0 {
		d.Obligations = res.obligations
	}
	return d.final(), nil
}

// deny returns d as a denial whose reason is the formatted error, and that error.
func deny(d Decision, format string, args ...any) (Decision, error) {
	err := fmt.Errorf(format, args...)
	d.Allow = false
	d.Reason = err.Error()
	return d.final(), err
}
