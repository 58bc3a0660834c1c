#!/usr/bin/env bash
# make demo-k8s: Veil on a real single-node Kubernetes v1.34.4 started on this machine
# (tests/internal/k8scluster, docs/kubernetes-cluster.md), the flow a cluster administrator and
# a workload owner follow (docs/kubernetes.md): the installer DaemonSet from deploy/, a plain
# veil pod with logs, exec and port-forward, a confidential veil-sim pod whose YAML went through
# veil-genpolicy and whose encrypted image is decrypted in the guest with a key from the KBS
# running in the cluster, what the policy refuses, a veil-snp pod left Pending on a machine
# without SNP, and the uninstall. It is tests/k8s TestDaemonSet, narrated: every step checks
# what it shows, and the cluster and everything it made are gone at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bold() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

bold "a single-node Kubernetes v1.34.4 (etcd, apiserver, controller-manager, scheduler, kubelet) with containerd 2.4, on 10.89.0.1"
start=$(date +%s)
set +e
VEIL_IMAGE=${IMAGE:-$PWD/build/image} VEIL_BIN=$PWD/bin \
	go test -tags e2e -count=1 -v -timeout 30m -run '^TestDaemonSet$' ./tests/k8s/ 2>&1 |
	awk '
		/^=== RUN   TestDaemonSet\// { sub(/^=== RUN   TestDaemonSet\//, ""); printf "\n\033[1m==> %s\033[0m\n", $0; next }
		/^    --- (PASS|FAIL)/ { print "  " $0; next }
		/^--- (PASS|FAIL)/ || /^(ok|FAIL)[ \t]/ { print; next }
		/^ +[a-z_]+_test\.go:[0-9]+:/ { sub(/^ +/, "  "); print; next }
		/^        / { print "  " $0 }
	'
rc=${PIPESTATUS[0]}
set -e
bold "done in $(( $(date +%s) - start )) s: the cluster, its VMs and everything it made on this machine are gone"
exit "$rc"
