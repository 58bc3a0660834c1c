package api

import "google.golang.org/protobuf/reflect/protoreflect"

// ServiceName is the fully qualified name of the agent's ttrpc service (agent.proto's
// package and service), as ttrpc and the policy's interceptor name it.
const ServiceName = "veil.agent.v1.Agent"

// ServiceDescriptor is the descriptor of the agent's service (ServiceName): its methods and
// their request and reply types.
func ServiceDescriptor() protoreflect.ServiceDescriptor {
	return File_agent_proto.Services().ByName(protoreflect.FullName(ServiceName).Name())
}
