#!/usr/bin/env bash
# Unpacks Debian's containerd 1.6 (containerd, ctr, containerd-shim-runc-v2) into
# bin/tools/containerd-1.6 without installing the package: `apt-get download` fetches it through
# apt's signed indexes and `dpkg -x` unpacks it, so no system service is started. Skipped when
# the binaries are there already. tests/shim (TestContainerd16) starts this containerd in a
# temporary root to check the shim against containerd 1.x (task API v2).
set -euo pipefail
dest="$(cd "$(dirname "$0")/.." && pwd)/bin/tools/containerd-1.6"
if [ -x "$dest/containerd" ] && [ -x "$dest/ctr" ]; then
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 777 "$tmp" # apt's _apt user downloads into it
echo "containerd16.sh: apt-get download containerd (Debian's 1.6) into $dest"
(cd "$tmp" && apt-get download -q containerd >/dev/null 2>&1) || {
	apt-get update -q >/dev/null
	(cd "$tmp" && apt-get download -q containerd >/dev/null)
}
dpkg -x "$tmp"/containerd_*.deb "$tmp/x"
mkdir -p "$dest"
for cmd in containerd ctr containerd-shim-runc-v2; do
	install -m 0755 "$tmp/x/usr/bin/$cmd" "$dest/$cmd"
done
"$dest/containerd" --version
