#!/usr/bin/env bash
# `make critest`: the CRI conformance suite (cri-tools v1.37.0's critest) against containerd
# 2.4.2 with the Veil runtime handler, then with runc, on this machine; prints passed, failed and
# skipped for both and the tests that fail only with Veil (docs/cri.md records the counts).
#
# Needs bin/containerd-shim-veil-v2, the guest image (IMAGE, default build/image) and
# containerd (scripts/containerd.sh) and crictl (scripts/cri-tools.sh) in bin/tools. Builds
# critest into bin/tools (cached) from a copy of the module outside the main module, and unpacks
# Debian's dynamically linked busybox (not installed: it conflicts with busybox-static) into
# bin/tools/critest-busybox for the test images. Extra arguments go to tests/critest, e.g.
#   scripts/critest.sh -handlers runc -focus 'Networking'
# Exits 0 when the suites ran (failures are the report), non-zero when they could not run.
set -euo pipefail
version=${CRI_TOOLS_VERSION:-v1.37.0}
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/bin/tools"
mkdir -p "$tools"
cd "$root"

if ! [ -x "$tools/critest" ] || [ "$(cat "$tools/critest.version" 2>/dev/null)" != "$version" ]; then
	echo "critest.sh: building critest $version (go test -c ./cmd/critest)"
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	dir=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/cri-tools@$version" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$dir" ] || { echo "critest.sh: cri-tools $version not in the module cache" >&2; exit 1; }
	cp -r "$dir" "$work/cri-tools" && chmod -R u+w "$work/cri-tools"
	(cd "$work/cri-tools" && GOFLAGS=-mod=mod go test -c -o "$tools/critest" ./cmd/critest)
	echo "$version" >"$tools/critest.version"
fi

bb="$tools/critest-busybox"
if ! [ -x "$bb/bin/busybox" ]; then
	echo "critest.sh: unpacking Debian's busybox package into $bb"
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	(cd "$work" && chmod 777 . && apt-get download busybox >/dev/null)
	rm -rf "$bb" && dpkg -x "$work"/busybox_*.deb "$bb"
fi

exec go run -tags e2e ./tests/critest -bin "$root/bin" -image "${IMAGE:-$root/build/image}" \
	-busybox "$bb" "$@"
