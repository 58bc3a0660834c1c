package api

import "testing"

// TestServiceName: ServiceName is agent.proto's service.
func TestServiceName(t *testing.T) {
	if got := File_agent_proto.Services().Get(0).FullName(); string(got) != ServiceName {
		t.Errorf("agent.proto's service is %s, ServiceName %s", got, ServiceName)
	}
	if d := ServiceDescriptor(); d == nil || string(d.FullName()) != ServiceName {
		t.Errorf("ServiceDescriptor() = %v, want %s", d, ServiceName)
	}
}
