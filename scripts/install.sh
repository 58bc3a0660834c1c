#!/usr/bin/env bash
# make install: puts the shim, the guest image and the default configuration in the standard
# places and prints the containerd configuration that enables the runtime. Run as root after
# `make build image`. PREFIX (default /usr/local) and DESTDIR (staging root) are honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
IMAGE=${IMAGE:-$PWD/build/image}

for f in bin/containerd-shim-veil-v2 bin/veil-ctl bin/veil-keyprovider "$IMAGE/vmlinuz" "$IMAGE/initrd.img" "$IMAGE/manifest.json"; do
	[ -e "$f" ] || { echo "install: $f missing: run make build image first" >&2; exit 1; }
done
install -D -m 0755 bin/containerd-shim-veil-v2 "$DESTDIR$PREFIX/bin/containerd-shim-veil-v2"
install -D -m 0755 bin/veil-ctl "$DESTDIR$PREFIX/bin/veil-ctl"
# veil-keyprovider and its ocicrypt configuration (docs/keyprovider.md), for encrypting images.
install -D -m 0755 bin/veil-keyprovider "$DESTDIR$PREFIX/bin/veil-keyprovider"
sed "s#/usr/local/bin/veil-keyprovider#$PREFIX/bin/veil-keyprovider#" deploy/keyprovider/ocicrypt.conf |
	install -D -m 0644 /dev/stdin "$DESTDIR/usr/share/veil/ocicrypt.conf"
install -d "$DESTDIR/usr/share/veil/image"
install -m 0644 "$IMAGE/vmlinuz" "$IMAGE/initrd.img" "$IMAGE/manifest.json" "$DESTDIR/usr/share/veil/image/"
install -d "$DESTDIR/etc/veil"
if [ -e "$DESTDIR/etc/veil/configuration.toml" ]; then
	echo "install: keeping the existing /etc/veil/configuration.toml (new one: configuration.toml.new)"
	install -m 0644 shim/config/configuration.toml "$DESTDIR/etc/veil/configuration.toml.new"
else
	install -m 0644 shim/config/configuration.toml "$DESTDIR/etc/veil/configuration.toml"
fi

cat <<'TOML'
install: done. Add this to containerd's config (/etc/containerd/config.toml, containerd 2.x,
config version 3) and restart containerd:

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.veil]
  runtime_type = 'io.containerd.veil.v2'
  pod_annotations = ['io.veil.config.*', 'io.katacontainers.config.hypervisor.cc_init_data']
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.veil.options]
    ConfigPath = '/etc/veil/configuration.toml'

Then: ctr run --rm --runtime io.containerd.veil.v2 docker.io/library/busybox:latest t1 echo hi
TOML
