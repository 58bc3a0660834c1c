#!/usr/bin/env bash
# Builds the cosign CLI (github.com/sigstore/cosign/v2) from the Go module proxy once into
# $VEIL_CACHE/cosign/<version>/cosign (default /var/cache/veil), skipped when it is there. The
# image signature tests (agent/imagesig, tests/cri) sign their images with it, offline, with a
# key pair they make. The version must match imagesigtest.CosignVersion.
set -euo pipefail
version=${COSIGN_VERSION:-v2.6.5}
dir="${VEIL_CACHE:-/var/cache/veil}/cosign/$version"
if [ -x "$dir/cosign" ]; then
	exit 0
fi
echo "cosign.sh: go install github.com/sigstore/cosign/v2/cmd/cosign@$version into $dir (a few minutes once)"
mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local go install \
	-ldflags "-s -w -X sigs.k8s.io/release-utils/version.gitVersion=$version" \
	"github.com/sigstore/cosign/v2/cmd/cosign@$version"
mv "$tmp/cosign" "$dir/cosign"
"$dir/cosign" version >/dev/null
