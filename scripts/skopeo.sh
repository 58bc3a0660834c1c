#!/usr/bin/env bash
# Builds skopeo 1.9.3 from Debian 12's own source package, with the Go modules its go.mod
# names (containers/image v5.22.1, ocicrypt v1.1.5), into a cache outside the clone:
#
#   $VEIL_CACHE/skopeo/1.9.3+ds1/skopeo          (VEIL_CACHE defaults to /var/cache/veil)
#
# Why not Debian's binary: bookworm's skopeo package is built against Debian's ocicrypt 1.0.3,
# which predates ocicrypt's key-provider protocol ("provider:" keys are "Provided protocol not
# recognized"), so it cannot encrypt through veil-keyprovider. The same skopeo source built with
# the modules upstream declared can. The source tarball is checked against the SHA-256 in
# Debian's signed .dsc. Pure Go (openpgp, no btrfs/devmapper/storage), ~2.5 min the first time.
set -euo pipefail

version=1.9.3+ds1
sha256=8293643ca664f8f5a0b5af4dba92c402143ccf4e154143b0ca76b67670606a5a
url=http://deb.debian.org/debian/pool/main/s/skopeo/skopeo_${version}.orig.tar.xz
cache=${VEIL_CACHE:-/var/cache/veil}
dir=$cache/skopeo/$version
bin=$dir/skopeo

if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "version ${version%+*}"; then
	echo "skopeo.sh: $bin is ${version%+*}: kept"
	exit 0
fi
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
work=$(mktemp -d "$dir/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "skopeo.sh: building skopeo $version from Debian's source into $bin"
curl -sSfL -o "$work/src.tar.xz" "$url"
echo "$sha256  $work/src.tar.xz" | sha256sum -c --quiet
mkdir "$work/src"
tar -xJf "$work/src.tar.xz" -C "$work/src" --strip-components=1
(cd "$work/src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
	-tags "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devmapper containers_image_storage_stub" \
	-o "$work/skopeo" ./cmd/skopeo)
"$work/skopeo" --version
mv "$work/skopeo" "$bin"
