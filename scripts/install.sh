#!/usr/bin/env bash
# make install: puts the shim, the guest image and the default configuration in the standard
# places and prints the containerd configuration that enables the runtime. Run as root after
# `make build image`. PREFIX (default /usr/local) and DESTDIR (staging root) are honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
IMAGE=${IMAGE:-$PWD/build/image}

for f in bin/containerd-shim-veil-v2 bin/veil-ctl bin/veil-keyprovider bin/veil-snapshotter "$IMAGE/vmlinuz" "$IMAGE/initrd.img" "$IMAGE/manifest.json"; do
	[ -e "$f" ] || { echo "install: $f missing: run make build image first" >&2; exit 1; }
done
install -D -m 0755 bin/containerd-shim-veil-v2 "$DESTDIR$PREFIX/bin/containerd-shim-veil-v2"
install -D -m 0755 bin/veil-ctl "$DESTDIR$PREFIX/bin/veil-ctl"
# veil-keyprovider and its ocicrypt configuration (docs/keyprovider.md), for encrypting images.
install -D -m 0755 bin/veil-keyprovider "$DESTDIR$PREFIX/bin/veil-keyprovider"
sed "s#/usr/local/bin/veil-keyprovider#$PREFIX/bin/veil-keyprovider#" deploy/keyprovider/ocicrypt.conf |
	install -D -m 0644 /dev/stdin "$DESTDIR/usr/share/veil/ocicrypt.conf"
install -D -m 0755 bin/veil-snapshotter "$DESTDIR$PREFIX/bin/veil-snapshotter"
install -d "$DESTDIR/etc/systemd/system"
bin/veil-snapshotter -print-systemd-unit "$PREFIX/bin/veil-snapshotter" >"$DESTDIR/etc/systemd/system/veil-snapshotter.service"
chmod 0644 "$DESTDIR/etc/systemd/system/veil-snapshotter.service"
install -D -m 0644 docs/snapshotter.md "$DESTDIR/usr/share/doc/veil/snapshotter.md"
install -d "$DESTDIR/usr/share/veil/image"
install -m 0644 "$IMAGE/vmlinuz" "$IMAGE/initrd.img" "$IMAGE/manifest.json" "$DESTDIR/usr/share/veil/image/"
install -d "$DESTDIR/etc/veil"
if [ -e "$DESTDIR/etc/veil/configuration.toml" ]; then
	echo "install: keeping the existing /etc/veil/configuration.toml (new one: configuration.toml.new)"
	install -m 0644 shim/config/configuration.toml "$DESTDIR/etc/veil/configuration.toml.new"
else
	install -m 0644 shim/config/configuration.toml "$DESTDIR/etc/veil/configuration.toml"
fi
# The guest-pull handler's configuration: the default one with guest_pull on.
if [ -e "$DESTDIR/etc/veil/configuration-guest-pull.toml" ]; then
	echo "install: keeping the existing /etc/veil/configuration-guest-pull.toml"
else
	sed 's/^guest_pull = false$/guest_pull = true/' shim/config/configuration.toml >"$DESTDIR/etc/veil/configuration-guest-pull.toml"
	chmod 0644 "$DESTDIR/etc/veil/configuration-guest-pull.toml"
	grep -q '^guest_pull = true$' "$DESTDIR/etc/veil/configuration-guest-pull.toml" ||
		{ echo "install: could not turn guest_pull on in configuration-guest-pull.toml" >&2; exit 1; }
fi

cat <<TOML
install: done. Add this to containerd's config (/etc/containerd/config.toml, containerd 2.x,
config version 3) and restart containerd:

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.veil]
  runtime_type = 'io.containerd.veil.v2'
  pod_annotations = ['io.veil.config.*', 'io.katacontainers.config.hypervisor.cc_init_data']
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.veil.options]
    ConfigPath = '/etc/veil/configuration.toml'

Then: ctr run --rm --runtime io.containerd.veil.v2 docker.io/library/busybox:latest t1 echo hi

For guest pull with no image layer on the host (docs/snapshotter.md): start the snapshotter
(systemctl daemon-reload && systemctl enable --now veil-snapshotter) and add, besides the
above (unpack_config replaces containerd's default list: keep your default snapshotter's
entry; this assumes overlayfs):

$(bin/veil-snapshotter -print-containerd-config overlayfs)
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.veil-pull]
  runtime_type = 'io.containerd.veil.v2'
  snapshotter = 'veil'
  pod_annotations = ['io.veil.config.*', 'io.katacontainers.config.hypervisor.cc_init_data']
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.veil-pull.options]
    ConfigPath = '/etc/veil/configuration-guest-pull.toml'

Pods of veil-pull need their images pulled for that handler (the kubelet's
RuntimeClassInImageCriApi feature gate, or the pod annotation
io.containerd.cri.runtime-handler: veil-pull) and policies made with
veil-genpolicy --guest-pull --veil-snapshotter. Pull the sandbox (pause) image once without
a handler (crictl pull) so that plain pods can unpack it.
TOML
