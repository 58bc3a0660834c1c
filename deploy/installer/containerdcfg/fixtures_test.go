package containerdcfg

// containerd configurations the tests start from.
const (
	// v3: containerd 2.x, no imports.
	fixtureV3 = `version = 3
root = "/var/lib/containerd" # where images live

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
`
	// v2: containerd 1.6/1.7 with a CRI section of its own.
	fixtureV2 = `# containerd 1.6, as a distribution ships it
version = 2
oom_score = -999

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
    endpoint = ["https://mirror.example", "https://registry-1.docker.io"]
`
	// glob: already imports every file of conf.d.
	fixtureGlob = `version = 3
imports = ["/etc/containerd/conf.d/*.toml"]
`
	// dropInDir: a relative glob of a directory of its own, and another import.
	fixtureDropInDir = `version = 2
imports = ["config.d/*.toml", "/etc/containerd/other.toml"] # site settings
`
	// multiline: imports spread over lines with comments, after other keys.
	fixtureMultiline = `# the version comes first
version = 2
root = "/var/lib/containerd"
imports = [
  "/etc/containerd/a.toml", # the first ] one
  '/etc/containerd/b#.toml',
]
state = "/run/containerd"

[grpc]
  address = "/run/k8s/containerd.sock"
`
	// v1: no version key.
	fixtureV1 = `root = "/var/lib/containerd"
[plugins.cri]
  sandbox_image = "k8s.gcr.io/pause:3.2"
`
)
