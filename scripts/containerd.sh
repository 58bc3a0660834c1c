#!/usr/bin/env bash
# Builds containerd 2.4.2 and ctr from the Go module proxy into bin/tools (skipped when they are
# there already). The shim's tests (tests/shim) and `make demo` start this containerd in a
# temporary root; nothing here touches the system's containerd.
set -euo pipefail
version=${CONTAINERD_VERSION:-v2.4.2}
tools="$(cd "$(dirname "$0")/.." && pwd)/bin/tools"
mkdir -p "$tools"
for cmd in containerd ctr containerd-shim-runc-v2; do
	if [ -x "$tools/$cmd" ] && "$tools/$cmd" --version 2>/dev/null | grep -q "$version"; then
		continue
	fi
	echo "containerd.sh: go install github.com/containerd/containerd/v2/cmd/$cmd@$version"
	GOBIN="$tools" CGO_ENABLED=0 GOFLAGS=-mod=mod go install \
		-ldflags "-X github.com/containerd/containerd/v2/version.Version=$version" \
		"github.com/containerd/containerd/v2/cmd/$cmd@$version"
done
