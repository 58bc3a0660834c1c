package api

// ServiceName is the fully qualified name of the agent's ttrpc service (agent.proto's
// package and service), as ttrpc and the policy's interceptor name it.
const ServiceName = "veil.agent.v1.Agent"
