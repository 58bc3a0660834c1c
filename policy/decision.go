package policy

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Decision is the engine's verdict on one request.
type Decision struct {
	// Method is the short method name ("ReadStdout"); Rule the rule that judged it, the
	// request message type ("ReadStreamRequest").
	Method string
	Rule   string
	// Allow is true only when the rule evaluated to true or to {"allow": true, ...}.
	Allow bool
	// Reason is the policy's "reason", or the engine's when the policy gave none or could
	// not be evaluated. It may be set on an allowed decision too.
	Reason string
	// Withhold is true when the request is denied but the call must still run with its
	// output discarded: ReadStdout and ReadStderr, so that the container's pipes keep
	// draining. The caller returns the reply with its data cleared (eof kept), not an error.
	// Withhold is never true on an allowed decision.
	Withhold bool
	// StateChanged is true when the decision carries a state change: Commit applies it.
	StateChanged bool
	// Obligations are what the policy requires the agent to enforce while it carries out an
	// allowed request, beyond what the request itself shows (the rule's "obligations"
	// object; nil for none): e.g. "sealed_mounts", the mount destinations whose every file
	// must be a sealed secret. The interceptor hands the decision to the handler
	// (DecisionFrom).
	Obligations map[string]any

	statePatch map[string]any // the policy's merge patch; nil for none
}

// final settles the derived fields: Withhold only applies to denials, and a denial always
// has a reason.
func (d Decision) final() Decision {
	if d.Allow {
		d.Withhold = false
		return d
	}
	d.statePatch, d.StateChanged, d.Obligations = nil, false, nil
	if d.Reason == "" {
		d.Reason = "not allowed"
	}
	return d
}

// Err is nil for an allowed decision, and otherwise the PermissionDenied status that the
// agent returns: "<RequestType> denied by policy: <reason>".
func (d Decision) Err() error {
	if d.Allow {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "%s denied by policy: %s", d.Rule, d.Reason)
}

// result is a rule's value read as a decision.
type result struct {
	allow  bool
	reason string
	state  map[string]any // a merge patch; nil for none
	// obligations for the handler; nil for none
	obligations map[string]any
}

// interpret reads a rule's value: true allows; an object allows when its "allow" is true and
// may carry "reason" and "state"; anything else denies.
func interpret(v any) result {
	switch v := v.(type) {
	case bool:
		if v {
			return result{allow: true}
		}
		return result{reason: "the policy returned false"}
	case map[string]any:
		r := result{}
		if s, ok := v["reason"].(string); ok {
			r.reason = s
		}
		allow, ok := v["allow"].(bool)
		if !ok {
			if r.reason == "" {
				r.reason = "the policy's result has no boolean \"allow\""
			}
			return r
		}
		r.allow = allow
		if st, ok := v["state"].(map[string]any); ok {
			r.state = st
		} else if v["state"] != nil {
			return result{reason: fmt.Sprintf("the policy's \"state\" is a %s, want an object", typeName(v["state"]))}
		}
		if ob, ok := v["obligations"].(map[string]any); ok {
			r.obligations = ob
		} else if v["obligations"] != nil {
			return result{reason: fmt.Sprintf("the policy's \"obligations\" is a %s, want an object", typeName(v["obligations"]))}
		}
		return r
	default:
		return result{reason: fmt.Sprintf("the policy returned a %s, want true or {\"allow\": true}", typeName(v))}
	}
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return "number"
	}
}

// stateDoc is one immutable version of the state document, in Go and in OPA's form.
type stateDoc struct {
	value map[string]any
	ast   ast.Value
}

func emptyState() *stateDoc {
	return &stateDoc{value: map[string]any{}, ast: ast.NewObject()}
}

// applyState merges patch into the current state (RFC 7386: objects merge key by key, null
// deletes a key, anything else replaces) and publishes the new version.
func (e *Engine) applyState(patch map[string]any) error {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	merged, _ := mergePatch(e.state.Load().value, patch).(map[string]any)
	if merged == nil {
		merged = map[string]any{}
	}
	v, err := ast.InterfaceToValue(merged)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	e.state.Store(&stateDoc{value: merged, ast: v})
	return nil
}

// mergePatch returns target with patch applied, copying every object it changes so that
// earlier versions stay untouched.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, _ := target.(map[string]any)
	out := make(map[string]any, len(t)+len(p))
	for k, v := range t {
		out[k] = v
	}
	for k, v := range p {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = mergePatch(out[k], v)
	}
	return out
}
