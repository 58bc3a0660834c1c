#!/usr/bin/env bash
# Builds crictl (cri-tools v1.37.0) from the Go module proxy into bin/tools (skipped when it is
# there already). tests/cri drives containerd's CRI plugin with it.
set -euo pipefail
version=${CRI_TOOLS_VERSION:-v1.37.0}
tools="$(cd "$(dirname "$0")/.." && pwd)/bin/tools"
mkdir -p "$tools"
if [ -x "$tools/crictl" ] && "$tools/crictl" --version 2>/dev/null | grep -q "${version#v}"; then
	exit 0
fi
echo "cri-tools.sh: go install sigs.k8s.io/cri-tools/cmd/crictl@$version"
GOBIN="$tools" CGO_ENABLED=0 GOFLAGS=-mod=mod go install \
	-ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=${version#v}" \
	"sigs.k8s.io/cri-tools/cmd/crictl@$version"
