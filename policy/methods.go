package policy

import (
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/veil-runtime/veil/agent/api"
)

// Method describes one method of the agent API as the policy sees it.
type Method struct {
	// Name is the method's short name: "CreateContainer".
	Name string
	// FullMethod is the name ttrpc gives an interceptor: "/veil.agent.v1.Agent/CreateContainer".
	FullMethod string
	// Rule is the name of the rule that judges the method: its request message type,
	// "CreateContainerRequest". Several methods may share a rule (ReadStdout and ReadStderr
	// both take a ReadStreamRequest); input.method tells them apart.
	Rule string
	// Withhold is true for the methods whose reply carries what a container says or runs
	// (ReadStdout and ReadStderr its output, ListProcesses its command lines): when the policy
	// denies them the call still runs, so that the pipes drain and the host still learns the
	// pids, and that content is withheld instead of returning an error.
	Withhold bool
}

// withholdMethods are the methods whose denial means "run and withhold", not "refuse", each
// with the function that clears what is withheld from its reply.
var withholdMethods = map[string]func(proto.Message) error{
	"ReadStdout":    clearData,
	"ReadStderr":    clearData,
	"ListProcesses": clearArgs,
}

// clearData clears the output of a ReadStreamResponse, keeping eof.
func clearData(m proto.Message) error {
	r, ok := m.(*api.ReadStreamResponse)
	if !ok {
		return fmt.Errorf("policy interceptor: cannot withhold the data of a %T", m)
	}
	r.Data = nil
	return nil
}

// clearArgs clears the command lines of a ListProcessesResponse, keeping pids and exec ids.
func clearArgs(m proto.Message) error {
	r, ok := m.(*api.ListProcessesResponse)
	if !ok {
		return fmt.Errorf("policy interceptor: cannot withhold the command lines of a %T", m)
	}
	for _, p := range r.GetProcesses() {
		p.Args = nil
	}
	return nil
}

// withhold clears what a denial withholds from resp, the reply of a Withhold method.
func (e methodEntry) withhold(resp any) (any, error) {
	m, ok := resp.(proto.Message)
	clear := withholdMethods[e.Name]
	if !ok || clear == nil {
		return nil, status.Errorf(codes.Internal, "policy interceptor: %s has nothing to withhold from a %T", e.Name, resp)
	}
	if err := clear(m); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return resp, nil
}

// methodTable is built once from the service descriptor, on first use: the agent binary is
// also every container process's init (libcontainer re-executes it), which needs no policy.
var methodTable = sync.OnceValue(buildMethods)

type methodEntry struct {
	Method
	input protoreflect.MessageType
}

func buildMethods() map[string]methodEntry {
	sd := api.ServiceDescriptor()
	ms := sd.Methods()
	table := make(map[string]methodEntry, ms.Len())
	for i := 0; i < ms.Len(); i++ {
		md := ms.Get(i)
		mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
		if err != nil {
			// The generated package registers every message of agent.proto: a miss is a
			// build defect, not a runtime condition.
			panic("policy: request type of " + string(md.Name()) + " is not registered: " + err.Error())
		}
		name := string(md.Name())
		table[name] = methodEntry{
			Method: Method{
				Name:       name,
				FullMethod: "/" + string(sd.FullName()) + "/" + name,
				Rule:       string(md.Input().Name()),
				Withhold:   withholdMethods[name] != nil,
			},
			input: mt,
		}
	}
	return table
}

// Methods lists every method of the agent API, in the order of the service descriptor
// (api.File_agent_proto). A test can walk it to prove that no method escapes the interceptor.
func Methods() []Method {
	ms := api.ServiceDescriptor().Methods()
	out := make([]Method, 0, ms.Len())
	for i := 0; i < ms.Len(); i++ {
		out = append(out, methodTable()[string(ms.Get(i).Name())].Method)
	}
	return out
}

// NewRequest returns an empty request message of the type that method takes.
func NewRequest(method string) (protoreflect.ProtoMessage, bool) {
	e, ok := lookup(method)
	if !ok {
		return nil, false
	}
	return e.input.New().Interface(), true
}

func lookup(name string) (methodEntry, bool) {
	if strings.HasPrefix(name, "/") {
		rest, ok := strings.CutPrefix(name, "/"+api.ServiceName+"/")
		if !ok {
			return methodEntry{}, false
		}
		name = rest
	}
	e, ok := methodTable()[name]
	return e, ok
}
