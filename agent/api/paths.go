package api

// SandboxNamespaceDir is where a container's spec names the namespaces of the pod's sandbox
// container: a namespace with path SandboxNamespaceDir + "/" + type ("ipc", "uts", "pid")
// joins the sandbox container's. containerd's CRI writes the host's view of these paths
// (/proc/<sandbox pid>/ns/ipc); the shim rewrites them to this form, the agent resolves them
// to its own sandbox container's, and a policy can allow exactly these paths without knowing
// any pid.
const SandboxNamespaceDir = "/run/veil/sandbox/ns"
