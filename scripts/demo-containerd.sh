#!/usr/bin/env bash
# The containerd part of `make demo`: a containerd 2.4.2 of its own (temporary root, own
# socket), a busybox image imported from an OCI archive made here, and `ctr run` with the Veil
# runtime, printing each step. Called by scripts/demo.sh with ROOTFS set to a busybox rootfs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/oci.sh
bin=$PWD/bin image=${IMAGE:-$PWD/build/image} rootfs=${ROOTFS:?}
dir=$(mktemp -d /tmp/veil-demo-containerd.XXXXXX)
# ctr, minus the cgroup v1 deprecation warning it prints on every call on these hosts.
ctrcmd() { "$bin/tools/ctr" --address "$dir/containerd.sock" "$@" 2> >(grep -v DEPRECATION >&2); }
ctr=(ctrcmd)

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
cleanup() {
	"${ctr[@]}" task kill -s SIGKILL demo2 >/dev/null 2>&1 || true
	"${ctr[@]}" task delete -f demo2 >/dev/null 2>&1 || true
	"${ctr[@]}" containers delete demo2 >/dev/null 2>&1 || true
	[ -n "${cpid:-}" ] && kill "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null
	grep -o " $dir[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

step "containerd $("$bin/tools/containerd" --version | awk '{print $3}') in $dir (its own root and socket; CRI off)"
cat >"$dir/containerd.toml" <<TOML
version = 3
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images", "io.containerd.nri.v1.nri"]
[grpc]
  address = "$dir/containerd.sock"
TOML
printf '[hypervisor]\nimage = "%s"\nmemory_mib = 512\nvcpus = 1\n' "$image" >"$dir/veil.toml"
PATH=$bin:$PATH VEIL_CONFIG=$dir/veil.toml "$bin/tools/containerd" --config "$dir/containerd.toml" >"$dir/containerd.log" 2>&1 &
cpid=$!
for _ in $(seq 1 100); do [ -S "$dir/containerd.sock" ] && "${ctr[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
echo "  runtime io.containerd.veil.v2 -> $bin/containerd-shim-veil-v2, config $dir/veil.toml"

step "a busybox image as an OCI archive, imported with ctr"
tar -C "$rootfs" --sort=name --owner=0 --group=0 --numeric-owner -cf "$dir/layer.tar" .
oci=$dir/oci
oci_layout "$oci" "$dir/layer.tar" '{"Env":["PATH=/bin"],"Cmd":["sh"]}' veil.demo/busybox:latest
tar -C "$oci" -cf "$dir/busybox.tar" oci-layout index.json blobs
"${ctr[@]}" images import --platform linux/amd64 "$dir/busybox.tar" | sed 's/^/  /'

step "ctr run --rm --runtime io.containerd.veil.v2: the container runs in a VM of its own"
time "${ctr[@]}" run --rm --runtime io.containerd.veil.v2 veil.demo/busybox:latest demo1 \
	sh -c 'echo "hello from containerd, in a Veil VM: $(uname -r)"; exit 3' || echo "  ctr run exit status: $? (the container's)"

step "a long-running task: ctr task exec, ps, then kill"
"${ctr[@]}" run -d --runtime io.containerd.veil.v2 veil.demo/busybox:latest demo2 sleep 600 >/dev/null
for _ in $(seq 1 300); do "${ctr[@]}" task ls 2>/dev/null | grep -q 'demo2.*RUNNING' && break; sleep 0.2; done
"${ctr[@]}" task ls | sed 's/^/  /'
"${ctr[@]}" task exec --exec-id e1 demo2 sh -c 'echo "  exec in the guest: pid $$, $(nproc) vCPU, $(free -m | awk "/Mem/{print \$2}") MiB"'
"${ctr[@]}" task ps demo2 | sed 's/^/  /'
echo "  QEMU processes now: $(pgrep -c -f "qemu-system.*veil" || true)"
"${ctr[@]}" task kill -s SIGKILL demo2
for _ in $(seq 1 100); do "${ctr[@]}" task ls 2>/dev/null | grep -q 'demo2.*STOPPED' && break; sleep 0.1; done
"${ctr[@]}" task ls | sed 's/^/  /'
"${ctr[@]}" task delete demo2 >/dev/null && "${ctr[@]}" containers delete demo2
echo "  deleted; QEMU processes left: $(pgrep -c -f "qemu-system.*veil" || true)"
