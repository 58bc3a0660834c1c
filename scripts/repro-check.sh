#!/usr/bin/env bash
# The guest image is reproducible (docs/guest-image.md): clone HEAD into a temporary directory,
# build the guest binaries and the image there (the usual HOME and caches, with the
# veil-image of `make agent`, bin/veil-image, or VEIL_IMAGE_TOOL), then let
# `veil-image verify` rebuild the image in another fresh clone with a fresh HOME and GOPATH
# and a Go build cache of its own, never the first build's (GOMODCACHE shared and
# GOPROXY=off: nothing is fetched twice; the .deb cache under /var/cache/veil/image is shared
# too) and compare every file byte for byte. A path, a timestamp or an environment that leaks
# into a binary fails it. The second build's cache is kept in /var/cache/veil/repro/gocache
# (VEIL_REPRO_GOCACHE; "fresh" for an empty one each run): a leaked path still shows, since
# whatever it caches was compiled in one of its own temporary clones, never in the first
# build's directory, and the second run costs a minute instead of six. Cost: docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
start=$(date +%s)
tmp=$(mktemp -d /tmp/veil-repro-XXXXXX)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
commit=$(git rev-parse HEAD)
[ -z "$(git status --porcelain)" ] || echo "repro-check: note: the work tree has changes; this checks HEAD ($commit) only"
git clone --quiet --shared . "$tmp/a"
git -C "$tmp/a" -c advice.detachedHead=false checkout --quiet --detach "$commit"
modcache=$($GO env GOMODCACHE)
tool=${VEIL_IMAGE_TOOL:-$PWD/bin/veil-image}
[ -x "$tool" ] || { echo "repro-check: $tool missing: run make agent" >&2; exit 1; }
(
	cd "$tmp/a"
	"$tool" binaries --src . --out bin --lock guest-image/image.lock
	"$tool" build --lock guest-image/image.lock --init bin/veil-init --agent bin/veil-agent --out build/image >/dev/null
)
echo "repro-check: clone $tmp/a built its image in $(( $(date +%s) - start )) s; verifying in a fresh clone, HOME and Go caches"
gocache=${VEIL_REPRO_GOCACHE:-/var/cache/veil/repro/gocache}
[ "$gocache" != fresh ] || gocache=$tmp/gocache
[ "$gocache" != "$($GO env GOCACHE)" ] || { echo "repro-check: VEIL_REPRO_GOCACHE is the first build's GOCACHE" >&2; exit 1; }
mkdir -p "$tmp/home" "$tmp/gopath" "$gocache"
env HOME="$tmp/home" GOPATH="$tmp/gopath" GOCACHE="$gocache" GOMODCACHE="$modcache" GOPROXY=off \
	TMPDIR="$tmp" "$tool" verify --src "$tmp/a" "$tmp/a/build/image"
echo "repro-check: passed in $(( $(date +%s) - start )) s"
