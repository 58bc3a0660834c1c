#!/usr/bin/env bash
# The pod part of `make demo`: a Kubernetes pod YAML goes through veil-genpolicy, which pins its
# image digests, command, variables, mounts and probe commands in an agent policy wrapped in
# initdata; the pod then runs through containerd 2.4's CRI (driven by crictl, as the kubelet
# would) with the Veil runtime handler, the initdata in its cc_init_data annotation. The agent
# enforces that policy: the pod runs, its probe's exec is allowed, an exec the pod did not
# declare is refused. Images come from a registry on loopback (crane registry serve). Called
# by scripts/demo.sh with ROOTFS set to a busybox rootfs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/oci.sh
bin=$PWD/bin tools=$PWD/bin/tools image=${IMAGE:-$PWD/build/image} rootfs=${ROOTFS:?}
dir=$(mktemp -d /tmp/veil-demo-pod.XXXXXX)
sock=$dir/containerd.sock
crictl() { "$tools/crictl" --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --timeout 2m "$@" 2> >(grep -v 'level=warning' >&2); }

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
cleanup() {
	for p in $(crictl pods -q 2>/dev/null); do crictl stopp "$p" >/dev/null 2>&1 || true; crictl rmp -f "$p" >/dev/null 2>&1 || true; done
	[ -n "${cpid:-}" ] && kill "$cpid" 2>/dev/null && { wait "$cpid" 2>/dev/null || true; }
	# A shim outlives containerd by design; one whose pod never became ready is ours to stop
	# (its QEMU dies with it).
	pkill -KILL -f "containerd-shim-veil-v2 .*-address $sock" 2>/dev/null || true
	[ -n "${rpid:-}" ] && kill "$rpid" 2>/dev/null && { wait "$rpid" 2>/dev/null || true; }
	ip link del veildemo0 2>/dev/null || true
	grep -o " $dir[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

step "a registry on loopback (crane registry serve) with a busybox image and a pause image"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
"$tools/crane" registry serve --address "$reg" >"$dir/registry.log" 2>&1 &
rpid=$!
for _ in $(seq 1 50); do curl -fsS "http://$reg/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
tar -C "$rootfs" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$dir/layer.tar" .
oci_layout "$dir/busybox" "$dir/layer.tar" '{"Env":["PATH=/bin"],"Cmd":["sh"]}'
oci_layout "$dir/pause" "$dir/layer.tar" '{"Env":["PATH=/bin"],"Entrypoint":["/bin/sh","-c","trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait $!; done"]}'
"$tools/crane" push --insecure "$dir/busybox" "$reg/demo/busybox:1.36" 2>/dev/null | sed 's/^/  pushed /'
"$tools/crane" push --insecure "$dir/pause" "$reg/demo/pause:3.10" 2>/dev/null | sed 's/^/  pushed /'

step "the pod as a user writes it"
cat >"$dir/pod.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: demo
spec:
  runtimeClassName: veil
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
  - name: app
    image: $reg/demo/busybox:1.36
    command: ["sh", "-c", "echo \"app: \$GREETING from a pod whose agent enforces its genpolicy policy\"; exec sleep 3600"]
    env:
    - name: GREETING
      value: hello
    readinessProbe:
      exec:
        command: ["cat", "/etc/hostname"]
YAML
sed 's/^/  /' "$dir/pod.yaml"

step "veil-genpolicy: resolve the images to digests, pin the pod in a policy, wrap it in initdata"
"$bin/veil-genpolicy" -f "$dir/pod.yaml" -o "$dir/pod.out.yaml" --out-dir "$dir" --plain-http-loopback \
	--sandbox-image "$reg/demo/pause:3.10" --algorithm sha384 2>&1 | sed 's/^/  /'
echo "  (the policy and the initdata document are in $dir/pod-demo.rego and pod-demo.initdata.toml)"
ann=$(awk '$1 == "io.katacontainers.config.hypervisor.cc_init_data:" {print $2}' "$dir/pod.out.yaml")
echo "  annotation added to the YAML: io.katacontainers.config.hypervisor.cc_init_data: ${ann:0:40}... (${#ann} bytes)"

step "containerd $("$tools/containerd" --version | awk '{print $3}') with CRI and the veil runtime handler (its own root and socket)"
mkdir -p "$dir/certs.d/$reg" "$dir/cni"
printf 'server = "http://%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' "$reg" "$reg" >"$dir/certs.d/$reg/hosts.toml"
cat >"$dir/cni/10-demo.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "veil-demo", "plugins": [{"type": "bridge", "bridge": "veildemo0",
  "isGateway": true, "ipMasq": false, "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.66.0/24"}]],
  "dataDir": "$dir/ipam"}}]}
JSON
printf '[hypervisor]\nimage = "%s"\nmemory_mib = 512\nvcpus = 1\n' "$image" >"$dir/veil.toml"
cat >"$dir/containerd.toml" <<TOML
version = 3
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.nri.v1.nri"]
[grpc]
  address = "$sock"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$reg/demo/pause:3.10"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$dir/certs.d"
[plugins.'io.containerd.cri.v1.runtime']
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.veil]
    runtime_type = 'io.containerd.veil.v2'
    pod_annotations = ['io.katacontainers.config.hypervisor.cc_init_data']
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.veil.options]
      ConfigPath = "$dir/veil.toml"
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['/usr/lib/cni']
    conf_dir = "$dir/cni"
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
TOML
PATH=$bin:$tools:$PATH "$tools/containerd" --config "$dir/containerd.toml" >"$dir/containerd.log" 2>&1 &
cpid=$!
for _ in $(seq 1 100); do crictl version >/dev/null 2>&1 && break; sleep 0.2; done
echo "  runtime handler veil -> io.containerd.veil.v2, pod_annotations = [cc_init_data]"
crictl pull "$reg/demo/busybox:1.36" | sed 's/^/  /'

step "crictl runp/create/start, as the kubelet would for this YAML: the pod's VM boots with the initdata"
cat >"$dir/pod.json" <<JSON
{"metadata": {"name": "demo", "namespace": "default", "uid": "demo-uid", "attempt": 0}, "hostname": "demo",
 "log_directory": "$dir/logs", "linux": {},
 "annotations": {"io.katacontainers.config.hypervisor.cc_init_data": "$ann"}}
JSON
ctr_json() { # NAME GREETING: the container config the kubelet sends for the YAML's container
	cat <<JSON
{"metadata": {"name": "$1"}, "image": {"image": "$reg/demo/busybox:1.36"},
 "command": ["sh", "-c", "echo \"app: \$GREETING from a pod whose agent enforces its genpolicy policy\"; exec sleep 3600"],
 "envs": [{"key": "GREETING", "value": "$2"}], "log_path": "$1.log",
 "linux": {"security_context": {"namespace_options": {"pid": 1},
   "masked_paths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
     "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi", "/sys/devices/virtual/powercap"],
   "readonly_paths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]}}}
JSON
}
ctr_json app hello >"$dir/app.json"
time pod=$(crictl runp --runtime veil "$dir/pod.json")
echo "  pod $pod"
cid=$(crictl create "$pod" "$dir/app.json" "$dir/pod.json")
crictl start "$cid" >/dev/null
for _ in $(seq 1 50); do crictl logs "$cid" 2>/dev/null | grep -q app: && break; sleep 0.2; done
crictl logs "$cid" 2>&1 | sed 's/^/  log: /'
echo "  QEMU processes for the pod: $(pgrep -c -f "qemu-system.*veil" || true)"

step "the readiness probe's command is in the policy: crictl exec $cid cat /etc/hostname"
crictl exec --sync "$cid" cat /etc/hostname | sed '/^$/d; s/^/  /'

step "an exec the pod did not declare is refused by the agent: crictl exec $cid sh -c id"
if out=$(crictl exec --sync "$cid" sh -c id 2>&1); then
	echo "  UNEXPECTED: allowed: $out"
	exit 1
fi
grep -o 'ExecProcessRequest denied by policy: .* is not allowed in container app' <<<"$out" | head -1 | sed 's/\\//g; s/^/  /'

step "a container with a changed variable (GREETING=evil) is refused too; the pod keeps running"
ctr_json app evil | sed 's/"name": "app"}/"name": "app", "attempt": 1}/' >"$dir/evil.json"
evil=$(crictl create "$pod" "$dir/evil.json" "$dir/pod.json")
if out=$(crictl start "$evil" 2>&1); then
	echo "  UNEXPECTED: allowed"
	exit 1
fi
grep -o 'CreateContainerRequest denied by policy: [^"]*' <<<"$out" | head -1 | sed 's/\\//g; s/^/  /'
echo "  the app container is still $(crictl inspect -o go-template --template '{{.status.state}}' "$cid")"

step "crictl stopp/rmp: the VM goes, nothing is left"
crictl stopp "$pod" >/dev/null && crictl rmp "$pod" >/dev/null
for _ in $(seq 1 50); do pgrep -f "qemu-system.*veil" >/dev/null || break; sleep 0.2; done
echo "  QEMU processes left: $(pgrep -c -f "qemu-system.*veil" || true)"
