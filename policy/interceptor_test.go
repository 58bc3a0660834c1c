package policy_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/policies"
)

// sampleRequest returns a request of the method's type with its id fields set.
func sampleRequest(t *testing.T, method string) proto.Message {
	t.Helper()
	req, ok := policy.NewRequest(method)
	if !ok {
		t.Fatalf("no request type for %s", method)
	}
	m := req.ProtoReflect()
	for _, f := range []protoreflect.Name{"container_id", "exec_id", "sandbox_id", "path"} {
		if fd := m.Descriptor().Fields().ByName(f); fd != nil {
			m.Set(fd, protoreflect.ValueOfString("/run/veil/shared/"+string(f)))
		}
	}
	return req
}

func callInterceptor(t *testing.T, e *policy.Engine, m policy.Method, req proto.Message) (resp any, handled proto.Message, err error) {
	t.Helper()
	payload, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	unmarshal := func(v any) error { return proto.Unmarshal(payload, v.(proto.Message)) }
	handler := func(ctx context.Context, um func(any) error) (any, error) {
		got, _ := policy.NewRequest(m.Name)
		if err := um(got); err != nil {
			return nil, err
		}
		handled = got
		switch m.Name {
		case "ReadStdout", "ReadStderr":
			return &api.ReadStreamResponse{Data: []byte("container output"), Eof: true}, nil
		case "ListProcesses":
			return &api.ListProcessesResponse{Processes: []*api.ProcessInfo{
				{Pid: 7, ExecId: "e1", Args: []string{"sh", "-c", "secret command line"}},
			}}, nil
		}
		return &api.Empty{}, nil
	}
	resp, err = policy.Interceptor(e)(context.Background(), unmarshal, &ttrpc.UnaryServerInfo{FullMethod: m.FullMethod}, handler)
	return resp, handled, err
}

// TestInterceptorEveryMethod walks the service descriptor: every method reaches the handler
// under allow-all, and none does under a policy without rules (except the output reads,
// which run with their data withheld).
func TestInterceptorEveryMethod(t *testing.T) {
	allowAll := mustEngine(t, policies.AllowAll)
	denyAll := mustEngine(t, "package agent_policy\n")
	methods := policy.Methods()
	if len(methods) != api.File_agent_proto.Services().ByName("Agent").Methods().Len() || len(methods) < 30 {
		t.Fatalf("Methods() has %d methods", len(methods))
	}
	for _, m := range methods {
		t.Run(m.Name, func(t *testing.T) {
			req := sampleRequest(t, m.Name)
			resp, handled, err := callInterceptor(t, allowAll, m, req)
			if err != nil || resp == nil {
				t.Fatalf("allow-all: %v", err)
			}
			if !proto.Equal(handled, req) {
				t.Fatalf("handler got %v, want %v", handled, req)
			}
			resp, handled, err = callInterceptor(t, denyAll, m, req)
			if m.Withhold {
				if err != nil || handled == nil || !withheld(resp) {
					t.Fatalf("withheld reply: resp %v, err %v, handled %v", resp, err, handled)
				}
				return
			}
			if handled != nil {
				t.Fatal("the handler ran for a denied request")
			}
			want := m.Rule + " denied by policy: the policy has no rule " + m.Rule
			if status.Code(err) != codes.PermissionDenied || status.Convert(err).Message() != want {
				t.Fatalf("err = %v, want PermissionDenied %q", err, want)
			}
		})
	}
}

// withheld reports whether resp is a withheld reply: a read with no data but its eof, or a
// process list with pids and no command lines.
func withheld(resp any) bool {
	switch r := resp.(type) {
	case *api.ReadStreamResponse:
		return len(r.Data) == 0 && r.Eof
	case *api.ListProcessesResponse:
		ps := r.GetProcesses()
		return len(ps) == 1 && ps[0].GetPid() == 7 && ps[0].GetExecId() == "e1" && len(ps[0].GetArgs()) == 0
	}
	return false
}

// The policy's state moves only when the handler succeeded: a CreateContainer that the agent
// refuses (an id in use) leaves the id bound to the container it was created as.
func TestInterceptorCommitsAfterSuccess(t *testing.T) {
	const rules = `package agent_policy

CreateContainerRequest := {"allow": true, "state": {"containers": {input.request.container_id: {"entry": input.request.oci_spec.annotations.entry}}}}

RemoveContainerRequest := {"allow": true, "state": {"containers": {input.request.container_id: null}}}
`
	e := mustEngine(t, rules)
	icpt := policy.Interceptor(e)
	call := func(method string, req proto.Message, fail error) error {
		payload, _ := proto.Marshal(req)
		handler := func(ctx context.Context, um func(any) error) (any, error) {
			got, _ := policy.NewRequest(method)
			if err := um(got); err != nil {
				return nil, err
			}
			return &api.Empty{}, fail
		}
		_, err := icpt(context.Background(), func(v any) error { return proto.Unmarshal(payload, v.(proto.Message)) },
			&ttrpc.UnaryServerInfo{FullMethod: "/" + api.ServiceName + "/" + method}, handler)
		return err
	}
	create := func(id, entry string) *api.CreateContainerRequest {
		return &api.CreateContainerRequest{ContainerId: id, OciSpec: []byte(`{"annotations":{"entry":"` + entry + `"}}`)}
	}
	entryOf := func(id string) any {
		cs, _ := e.State()["containers"].(map[string]any)
		c, _ := cs[id].(map[string]any)
		return c["entry"]
	}
	if err := call("CreateContainer", create("c1", "web"), nil); err != nil {
		t.Fatal(err)
	}
	inUse := errors.New("container c1: already exists")
	if err := call("CreateContainer", create("c1", "debug"), inUse); !errors.Is(err, inUse) {
		t.Fatalf("the handler's error: %v", err)
	}
	if got := entryOf("c1"); got != "web" {
		t.Fatalf("after a refused re-create, c1 is %v in the state, want web", got)
	}
	if err := call("RemoveContainer", &api.RemoveContainerRequest{ContainerId: "c1"}, errors.New("busy")); err == nil {
		t.Fatal("a failed remove reported success")
	}
	if got := entryOf("c1"); got != "web" {
		t.Fatalf("after a failed remove, c1 is %v in the state, want web", got)
	}
	if err := call("RemoveContainer", &api.RemoveContainerRequest{ContainerId: "c1"}, nil); err != nil {
		t.Fatal(err)
	}
	if got := entryOf("c1"); got != nil {
		t.Fatalf("after the remove, c1 is %v in the state", got)
	}
	// Judge alone never moves the state; Commit of a denial does nothing.
	d, err := e.Judge(context.Background(), "CreateContainer", create("c2", "web"))
	if err != nil || !d.Allow || !d.StateChanged || entryOf("c2") != nil {
		t.Fatalf("Judge: %+v, %v; c2 in the state: %v", d, err, entryOf("c2"))
	}
	if err := e.Commit(d); err != nil || entryOf("c2") != "web" {
		t.Fatalf("Commit: %v; c2 is %v", err, entryOf("c2"))
	}
}

func TestInterceptorRefusals(t *testing.T) {
	e := mustEngine(t, policies.AllowAll)
	icpt := policy.Interceptor(e)
	called := false
	handler := func(context.Context, func(any) error) (any, error) { called = true; return &api.Empty{}, nil }
	ok := func(any) error { return nil }
	for _, tc := range []struct {
		name      string
		method    string
		unmarshal ttrpc.Unmarshaler
		want      codes.Code
	}{
		{"unknown method", "/" + api.ServiceName + "/Backdoor", ok, codes.PermissionDenied},
		{"other service", "/other.Service/Check", ok, codes.PermissionDenied},
		{"undecodable", "/" + api.ServiceName + "/Check", func(any) error { return errors.New("garbage") }, codes.InvalidArgument},
		{"spec that is not an OCI spec", "/" + api.ServiceName + "/CreateContainer", func(v any) error {
			v.(*api.CreateContainerRequest).OciSpec = []byte("not json")
			return nil
		}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			called = false
			_, err := icpt(context.Background(), tc.unmarshal, &ttrpc.UnaryServerInfo{FullMethod: tc.method}, handler)
			if status.Code(err) != tc.want || called {
				t.Fatalf("err = %v (handler called %v), want %v", err, called, tc.want)
			}
		})
	}
}

// fakeAgent implements the two methods the round trip uses.
type fakeAgent struct {
	api.AgentService
	mu     sync.Mutex
	copied []string
}

func (f *fakeAgent) Check(context.Context, *api.CheckRequest) (*api.CheckResponse, error) {
	return &api.CheckResponse{Status: api.CheckResponse_SERVING}, nil
}

func (f *fakeAgent) CopyFile(_ context.Context, r *api.CopyFileRequest) (*api.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.copied = append(f.copied, r.GetPath())
	return &api.Empty{}, nil
}

// TestInterceptorOverTTRPC runs a real ttrpc server with the interceptor chained the way the
// agent chains it.
func TestInterceptorOverTTRPC(t *testing.T) {
	e := mustEngine(t, `package agent_policy

default CheckRequest := true

CopyFileRequest := {"allow": false, "reason": "path contains \"..\""} if contains(input.request.path, "..")
else := true
`)
	outer := func(ctx context.Context, um ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (any, error) {
		return m(ctx, um)
	}
	srv, err := ttrpc.NewServer(ttrpc.WithChainUnaryServerInterceptor(outer, policy.Interceptor(e)))
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeAgent{}
	api.RegisterAgentService(srv, fake)
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(context.Background(), l) }()
	defer srv.Close()
	conn, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	agent := api.NewAgentClient(client)
	ctx := context.Background()
	if _, err := agent.Check(ctx, &api.CheckRequest{}); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if _, err := agent.CopyFile(ctx, &api.CopyFileRequest{Path: "/run/veil/shared/hosts"}); err != nil {
		t.Fatalf("allowed CopyFile: %v", err)
	}
	_, err = agent.CopyFile(ctx, &api.CopyFileRequest{Path: "/run/veil/shared/../../etc/shadow", Data: []byte("x")})
	want := `CopyFileRequest denied by policy: path contains ".."`
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
		t.Fatalf("CopyFile with ..: %v, want PermissionDenied %q", err, want)
	}
	if _, err := agent.Version(ctx, &api.VersionRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Version without a rule: %v", err)
	}
	if len(fake.copied) != 1 {
		t.Fatalf("handler ran %d times, want 1", len(fake.copied))
	}
}

func TestDecisionLog(t *testing.T) {
	l := policy.NewDecisionLog(2048)
	e := mustEngine(t, "package agent_policy\n\nCopyFileRequest := {\"allow\": false, \"reason\": \"no\"}\nWriteStreamRequest := true\n",
		policy.WithDecisionLog(l))
	ctx := context.Background()
	secret := []byte("TOP-SECRET-PAYLOAD")
	for i := 0; i < 50; i++ {
		e.Decide(ctx, "CopyFile", &api.CopyFileRequest{Path: "/run/veil/shared/x", Data: secret})
		e.Decide(ctx, "WriteStdin", &api.WriteStreamRequest{ContainerId: "c1", ExecId: "e1", Data: secret})
	}
	var buf bytes.Buffer
	if _, err := l.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if buf.Len() > 2048 {
		t.Fatalf("log holds %d bytes, over its 2048 budget", buf.Len())
	}
	held, dropped := l.Len()
	if held == 0 || dropped == 0 || held+int(dropped) != 100 {
		t.Fatalf("held %d dropped %d, want 100 in all and some dropped", held, dropped)
	}
	for _, bad := range []string{"TOP-SECRET", "VE9QLVNFQ1JFVC"} { // the payload, and its base64
		if strings.Contains(out, bad) {
			t.Fatalf("log contains payload %q:\n%s", bad, out)
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	for _, want := range []string{`"method":"WriteStdin"`, `"rule":"WriteStreamRequest"`, `"allow":true`, `"container_id":"c1"`, `"exec_id":"e1"`} {
		if !strings.Contains(last, want) {
			t.Fatalf("last line %s lacks %s", last, want)
		}
	}
	if !strings.Contains(out, `"method":"CopyFile","rule":"CopyFileRequest","allow":false,"reason":"no"`) {
		t.Fatalf("no CopyFile denial in\n%s", out)
	}
}

func TestDecideConcurrent(t *testing.T) {
	e := mustEngine(t, statePolicy, policy.WithDecisionLog(policy.NewDecisionLog(0)))
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := string(rune('a' + g))
			for i := 0; i < 50; i++ {
				if d, _ := e.Decide(ctx, "CreateContainer", &api.CreateContainerRequest{ContainerId: id, OciSpec: specJSON("/web")}); !d.Allow {
					t.Errorf("create %s: %s", id, d.Reason)
					return
				}
				if d, _ := e.Decide(ctx, "ExecProcess", &api.ExecProcessRequest{ContainerId: id}); !d.Allow {
					t.Errorf("exec %s: %s", id, d.Reason)
					return
				}
			}
		}()
	}
	wg.Wait()
	if c, _ := e.State()["containers"].(map[string]any); len(c) != 8 {
		t.Fatalf("state has %d containers, want 8", len(c))
	}
}

// The handler runs the spec the policy judged, decoded once (SpecFrom): a spec that the
// policy saw one way cannot reach the handler another way, and a request without a spec
// leaves the handler to read oci_spec itself.
func TestInterceptorHandsOverTheJudgedSpec(t *testing.T) {
	const rules = `package agent_policy

CreateContainerRequest if input.request.oci_spec.annotations.entry == "web"

CreateContainerRequest if input.request.oci_spec == null
`
	icpt := policy.Interceptor(mustEngine(t, rules))
	call := func(spec string) (got *specs.Spec, ok bool, err error) {
		payload, _ := proto.Marshal(&api.CreateContainerRequest{ContainerId: "c1", OciSpec: []byte(spec)})
		handler := func(ctx context.Context, _ func(any) error) (any, error) {
			got, ok = policy.SpecFrom(ctx)
			return &api.Empty{}, nil
		}
		_, err = icpt(context.Background(), func(v any) error { return proto.Unmarshal(payload, v.(proto.Message)) },
			&ttrpc.UnaryServerInfo{FullMethod: "/" + api.ServiceName + "/CreateContainer"}, handler)
		return got, ok, err
	}
	// encoding/json matches keys case-insensitively and the last duplicate wins: the policy
	// and the handler both see "web".
	got, ok, err := call(`{"annotations":{"entry":"debug"},"ANNOTATIONS":{"entry":"web"}}`)
	if err != nil || !ok || got.Annotations["entry"] != "web" {
		t.Fatalf("handler got spec %+v (%v), err %v; want the judged spec with entry web", got, ok, err)
	}
	if _, _, err := call(`{"annotations":{"entry":"debug"}}`); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a denied spec: err %v, want PermissionDenied", err)
	}
	if got, ok, err := call(""); err != nil || ok || got != nil {
		t.Fatalf("no spec: handler got %+v (%v), err %v; want none", got, ok, err)
	}
	if _, _, err := call(`{"annotations":`); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a spec that is not JSON: err %v, want InvalidArgument", err)
	}
}
