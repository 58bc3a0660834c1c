# shellcheck shell=bash
# oci_layout OUT LAYER CONFIG [NAME]: writes a one-layer linux/amd64 OCI image layout in OUT
# from the layer tarball LAYER and CONFIG (the image config's "config" object as JSON). With
# NAME (repo:tag), the index names the image as containerd's `ctr images import` reads it.
# Sourced by the demo scripts.
oci_layout() {
	local out=$1 layer_tar=$2 cfg=$3 name=${4:-} tmp layer config manifest ann=""
	tmp=$(mktemp -d)
	mkdir -p "$out/blobs/sha256"
	_oci_blob() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" "$out/blobs/sha256/$d"; echo "$d"; }
	_oci_size() { stat -c %s "$out/blobs/sha256/$1"; }
	layer=$(_oci_blob "$layer_tar")
	printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
		"$cfg" "$layer" >"$tmp/config.json"
	config=$(_oci_blob "$tmp/config.json")
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' \
		"$config" "$(_oci_size "$config")" "$layer" "$(_oci_size "$layer")" >"$tmp/manifest.json"
	manifest=$(_oci_blob "$tmp/manifest.json")
	if [ -n "$name" ]; then
		ann=$(printf ',"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}' "$name" "${name##*:}")
	fi
	printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d%s}]}' \
		"$manifest" "$(_oci_size "$manifest")" "$ann" >"$out/index.json"
	echo '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"
	rm -rf "$tmp"
}
