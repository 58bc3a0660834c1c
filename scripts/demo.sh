#!/usr/bin/env bash
# The main job, on embedded defaults: boot a Veil VM from the guest image that `make image`
# built and run containers in it with veil-ctl; then through containerd 2.4 and the shim
# (scripts/demo-containerd.sh); then a pod under a policy made by veil-genpolicy, through
# containerd's CRI (scripts/demo-pod.sh); then a sim guest attesting to veil-kbs for a secret
# (scripts/demo-kbs.sh); then the confidential flow end to end: an encrypted, signed image and a
# sealed secret in a pod whose layers only the guest fetches (scripts/demo-confidential.sh).
# Each step is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/bin image=${IMAGE:-$PWD/build/image} rootfs=$PWD/build/demo-rootfs

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "guest image in $image"
python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print("  kernel %s (%s %s)\n  initrd sha384 %s\n  cmdline: %s" % (m["kernelRelease"], m["kernelPackage"]["name"], m["kernelPackage"]["version"], m["initrd"]["sha384"][:32]+"...", m["cmdline"]))' "$image/manifest.json" 2>/dev/null || cat "$image/manifest.json"

step "container root filesystem from Debian's busybox-static in $rootfs"
rm -rf "$rootfs" && mkdir -p "$rootfs"/{bin,etc,proc,sys,dev,tmp,root,run}
cp /bin/busybox "$rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"

step "veil-ctl run: boot a VM (QEMU), run 'uname -a; cat /proc/cpuinfo | grep model name' in a container"
time "$bin/veil-ctl" run --image "$image" --rootfs "$rootfs" -- \
	sh -c 'echo "hello from a container in a Veil VM"; uname -a; grep -m1 "model name" /proc/cpuinfo; echo "pid 1 here is: $(cat /proc/1/comm)"'

step "the exit status of the container is veil-ctl's: sh -c 'exit 7'"
set +e
"$bin/veil-ctl" run -q --image "$image" --rootfs "$rootfs" -- sh -c 'exit 7'
echo "  exit status: $?"
set -e

step "stdin relayed: 1 MiB of random bytes through cat, compared by sha256"
head -c 1048576 /dev/urandom >build/demo-in
"$bin/veil-ctl" run -q -i --image "$image" --rootfs "$rootfs" -- cat <build/demo-in >build/demo-out
sha256sum build/demo-in build/demo-out | sed 's/^/  /'
cmp build/demo-in build/demo-out && echo "  identical"
rm -f build/demo-in build/demo-out

step "a named VM: exec, ps and raw API calls from another process while it runs"
"$bin/veil-ctl" run -q --name demo --image "$image" --rootfs "$rootfs" -- sleep 600 &
run_pid=$!
trap 'kill $run_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do [ -S /run/veil/ctl/demo/agent.sock ] && break; sleep 0.5; done
"$bin/veil-ctl" exec --name demo -- sh -c 'echo "exec: hostname $(hostname), $(nproc) vCPU"'
"$bin/veil-ctl" ps --name demo
"$bin/veil-ctl" call --name demo GetGuestDetails
echo "  copy-file with '..' is refused:"
"$bin/veil-ctl" call --name demo CopyFile '{"path":"/run/veil/../etc/passwd","data":"eA=="}' 2>&1 | sed 's/^/  /' || true
"$bin/veil-ctl" kill --name demo KILL
wait $run_pid || echo "  container ended with status $? (128+9: SIGKILL; the container's pid 1 ignores SIGTERM without a handler)"
trap - EXIT

ROOTFS=$rootfs scripts/demo-containerd.sh
ROOTFS=$rootfs scripts/demo-pod.sh
scripts/demo-kbs.sh
scripts/demo-confidential.sh

step "done: every VM stopped, nothing left running"
pgrep -a qemu-system || echo "  no QEMU process left"
