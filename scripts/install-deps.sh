#!/usr/bin/env bash
# Installs what building and testing Veil needs on a Debian 12 machine, as root. It does nothing
# for what is already there, so every make target can call it.
set -euo pipefail

# Debian packages: QEMU (TCG guests, virtiofsd), the busybox used for test root filesystems,
# protoc for the agent API, libseccomp for the static agent, kmod/xz/cpio for the guest image,
# runc for the side-by-side benchmark against the shim, curl and python3 for the demo, CNI
# plugins for the CRI suite's pod network; flex, bison, bc, libelf-dev and libssl-dev (with
# gcc, make, cpio and xz-utils) to build the veil guest kernel (veil-image build --kernel veil).
debs=(qemu-system-x86 qemu-utils busybox-static protobuf-compiler libseccomp-dev kmod xz-utils
      cpio gcc libc6-dev make ca-certificates iproute2 runc curl python3
      containernetworking-plugins flex bison bc libelf-dev libssl-dev)

missing=()
for p in "${debs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "install-deps: need root to install: ${missing[*]}" >&2
		exit 1
	fi
	echo "install-deps: installing ${missing[*]}"
	apt-get update -qq || echo "install-deps: apt-get update reported errors; trying the install anyway" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Go tools, pinned, into bin/tools (only what make proto needs).
tools="$(cd "$(dirname "$0")/.." && pwd)/bin/tools"
mkdir -p "$tools"
install_tool() { # name module@version
	[ -x "$tools/$1" ] && return 0
	echo "install-deps: go install $2"
	GOBIN="$tools" go install "$2"
}
install_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
install_tool protoc-gen-go-ttrpc github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc@v1.2.10
