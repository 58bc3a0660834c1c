#!/usr/bin/env bash
# Builds a single-node Kubernetes for the tests (tests/k8s) from the Go module proxy: kubelet,
# kube-apiserver, kube-controller-manager, kube-scheduler and kubectl v1.34.4, and etcd v3.6.6,
# into a cache outside the clone (docs/kubernetes-cluster.md):
#
#   $VEIL_CACHE/kubernetes/v1.34.4/bin/{kubelet,kube-apiserver,...}
#   $VEIL_CACHE/etcd/v3.6.6/bin/etcd                       (VEIL_CACHE defaults to /var/cache/veil)
#
# k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces its staging modules with local
# paths), so each build goes through a small wrapper module that requires it and replaces every
# staging module with its published v0.34.x. A binary that is there and reports the right
# `--version` is skipped. Each build runs in a temporary directory next to the cache, and the
# binary is renamed into place only once it reports its version, so an interrupted build never
# leaves something that looks complete. ~20 min of compiling on 2 cores the first time.
set -euo pipefail

k8s_version=${KUBERNETES_VERSION:-v1.34.4}
etcd_version=${ETCD_VERSION:-v3.6.6}
cache=${VEIL_CACHE:-/var/cache/veil}
k8s_bin=$cache/kubernetes/$k8s_version/bin
etcd_bin=$cache/etcd/$etcd_version/bin
# Built in this order: the apiserver first compiles most of what the others share.
k8s_cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet)

log() { echo "kubernetes.sh: $*"; }

# version_ok BINARY EXPECTED: whether BINARY runs and reports EXPECTED as its version.
version_ok() {
	local out
	[ -x "$1" ] || return 1
	case "$(basename "$1")" in
	kubectl) out=$("$1" version --client 2>/dev/null) || return 1 ;;
	*) out=$("$1" --version 2>/dev/null) || return 1 ;;
	esac
	grep -qE "(^|[ v])${2#v}([^0-9.-]|$)" <<<"$out"
}

mkdir -p "$k8s_bin" "$etcd_bin"
# One build at a time per cache (two test runs may start together).
exec 9>"$cache/kubernetes/.lock"
if ! flock -n 9; then
	log "another build holds $cache/kubernetes/.lock; waiting"
	flock 9
fi

todo=()
for c in "${k8s_cmds[@]}"; do
	if version_ok "$k8s_bin/$c" "$k8s_version"; then
		log "$k8s_bin/$c is $k8s_version: kept"
	else
		todo+=("$c")
	fi
done
need_etcd=1
if version_ok "$etcd_bin/etcd" "$etcd_version"; then
	log "$etcd_bin/etcd is $etcd_version: kept"
	need_etcd=0
fi
if [ ${#todo[@]} -eq 0 ] && [ $need_etcd -eq 0 ]; then
	exit 0
fi

# Build directories of an interrupted run (we hold the lock, so none is in use).
rm -rf "$cache"/kubernetes/.build.*
tmp=$(mktemp -d "$cache/kubernetes/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
export GOFLAGS="${GOFLAGS:-} -mod=mod" GOWORK=off
total_start=$SECONDS

# build DIR PKG OUT LDFLAGS: go build PKG in the wrapper module DIR into OUT, timed.
build() {
	local start=$SECONDS
	log "go build -o $3 $2"
	(cd "$1" && go build -trimpath -ldflags "$4" -o "$3" "$2")
	log "built $(basename "$3") in $((SECONDS - start)) s"
}

# install_bin TMPFILE DEST VERSION: checks the fresh binary, then renames it into place.
install_bin() {
	if ! version_ok "$1" "$3"; then
		log "$1 does not report $3:" >&2
		"$1" --version >&2 || true
		exit 1
	fi
	mv -f "$1" "$2"
}

if [ ${#todo[@]} -gt 0 ]; then
	log "Kubernetes $k8s_version: building ${todo[*]} into $k8s_bin"
	w=$tmp/k8s
	mkdir -p "$w/out"
	# The staging replace lines come from that version's own go.mod.
	gomod=$(cd "$tmp" && go mod download -json "k8s.io/kubernetes@$k8s_version" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
	[ -f "$gomod" ] || { log "could not download k8s.io/kubernetes@$k8s_version's go.mod" >&2; exit 1; }
	staging_version=v0.${k8s_version#v1.}
	mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*#\1#p' "$gomod")
	[ ${#staging[@]} -gt 0 ] || { log "no staging replace lines in $gomod" >&2; exit 1; }
	log "${#staging[@]} staging modules replaced by their $staging_version"
	{
		echo "module veil.local/kubernetes-build"
		echo
		echo "go 1.24.0"
		echo
		echo "require k8s.io/kubernetes $k8s_version"
		echo
		echo "replace ("
		for m in "${staging[@]}"; do echo "	$m => $m $staging_version"; done
		echo ")"
	} >"$w/go.mod"
	{
		echo "//go:build tools"
		echo
		echo "// Package tools pins the commands this module builds."
		echo "package tools"
		echo
		echo "import ("
		for c in "${k8s_cmds[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$c\""; done
		echo ")"
	} >"$w/tools.go"
	start=$SECONDS
	(cd "$w" && go mod tidy)
	log "go mod tidy: $((SECONDS - start)) s"
	minor=${k8s_version#v1.}
	minor=${minor%%.*}
	ld="-s -w"
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$minor"
		ld+=" -X $p.gitTreeState=clean"
	done
	for c in "${todo[@]}"; do
		build "$w" "k8s.io/kubernetes/cmd/$c" "$w/out/$c" "$ld"
		install_bin "$w/out/$c" "$k8s_bin/$c" "$k8s_version"
	done
fi

if [ $need_etcd -eq 1 ]; then
	log "etcd $etcd_version: building into $etcd_bin"
	w=$tmp/etcd
	mkdir -p "$w/out"
	cat >"$w/go.mod" <<-EOF
		module veil.local/etcd-build

		go 1.24.0

		require go.etcd.io/etcd/server/v3 $etcd_version
	EOF
	cat >"$w/tools.go" <<-EOF
		//go:build tools

		// Package tools pins the command this module builds.
		package tools

		import _ "go.etcd.io/etcd/server/v3"
	EOF
	start=$SECONDS
	(cd "$w" && go mod tidy)
	log "go mod tidy: $((SECONDS - start)) s"
	build "$w" go.etcd.io/etcd/server/v3 "$w/out/etcd" "-s -w"
	install_bin "$w/out/etcd" "$etcd_bin/etcd" "$etcd_version"
fi

log "done in $((SECONDS - total_start)) s: $k8s_bin, $etcd_bin"
