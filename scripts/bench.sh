#!/usr/bin/env bash
# make bench: every benchmark figure of the project, printed. VM figures come from real QEMU
# boots of the guest image (tests/bench); the others are Go benchmarks of the packages.
set -euo pipefail
cd "$(dirname "$0")/.."
export VEIL_IMAGE=${IMAGE:-$PWD/build/image}

# Every section's raw output is kept in build/bench.txt, from which scripts/benchgoals prints
# issue 14's goals beside the figures at the end.
raw=$PWD/build/bench.txt
mkdir -p build && : >"$raw"
keep() { tee -a "$raw" | grep -E "$1"; }

echo "== VM: boot to agent-ready vs a bare boot (same kernel, trivial init), health check, footprint;"
echo "   the agent's start (agent÷boot: exec to its first answer ÷ boot to agent-ready, goal ≤ 0.05) and an exec broken down"
VEIL_BIN=$PWD/bin go test -tags e2e -run '^$' -bench . -skip 'VeilKernel$' -benchtime 1x -count 1 ./tests/bench/ | keep '^(Benchmark|ok|FAIL)'

echo "== VM: the veil kernel (make image-veil) vs Debian's cloud kernel: veil boot to agent-ready ÷ bare Debian boot (goal ≤ 0.5), bare veil ÷ bare Debian, sizes, build time"
VEIL_IMAGE_VEIL=${IMAGE_VEIL:-$PWD/build/image-veil} go test -tags e2e -run '^$' -bench 'VeilKernel$' -benchtime 1x -count 1 -timeout 30m ./tests/bench/ | keep '^(Benchmark|ok|FAIL)'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== load: 1,000 execs and 600 MiB of one process's output through the agent (every byte counted), agent RSS before and after"
go test -tags 'e2e load' -run 'TestLoad$' -count 1 -v -timeout 40m ./tests/e2e/ | keep '(load_test|^--- |^ok|^FAIL)'

echo "== load through the shim: 1,000 ctr task exec and 200 MiB of one exec's output through containerd's FIFOs, shim RSS before and after"
VEIL_BIN=$PWD/bin go test -tags 'e2e load' -run 'TestShimLoad$' -count 1 -v -timeout 60m ./tests/shim/ | keep '(load_test|^--- |^ok|^FAIL)'

echo "== containerd: ctr run to first output (Veil vs runc; veil÷boot: over boot to agent-ready, goal ≤ 1.2), shim RSS, QEMU PSS"
VEIL_BIN=$PWD/bin go test -tags e2e -run '^$' -bench . -benchtime 1x -count 1 ./tests/shim/ | keep '^(Benchmark|ok|FAIL)'

echo "== CRI: guest pull + decrypt + unpack of a 120 MiB image vs the host's skopeo copy; confidential pod start vs plain"
VEIL_BIN=$PWD/bin go test -tags e2e -run '^$' -bench '^Benchmark(GuestPull|ConfidentialStart)$' -benchtime 1x -count 1 -timeout 40m ./tests/cri/ | keep '^(Benchmark|ok|FAIL)'

echo "== density: 20 pods running at once through CRI (started 2×CPUs at a time), all healthy; the last one's time vs one pod alone, memory per pod"
VEIL_BIN=$PWD/bin go test -tags e2e -run '^$' -bench 'Density$' -benchtime 1x -count 1 -timeout 40m ./tests/cri/ | keep '^(Benchmark|ok|FAIL)'

echo "== Kubernetes: kubectl apply to Running (runc, veil, veil-sim with guest pull), pod memory vs the RuntimeClass overhead"
VEIL_BIN=$PWD/bin go test -tags e2e -run '^$' -bench . -count 1 -timeout 30m ./tests/k8s/ | keep '^(Benchmark|ok|FAIL)'

echo "== KBS: challenges (auth/s, heap kept per auth), session handshakes (1 and 8 guests at once), 100,000 handshakes from 8 guests (rate, p50/p99, heap after)"
go test -run '^$' -bench . -benchtime 2s -count 1 ./attestation/kbs/ | keep '^(Benchmark|ok|FAIL)'

# Package benchmarks: attestation (verify vs bare signature checks), KBS handshakes with sim
# evidence, policy. (attestation/kbs itself is in the KBS section above.)
pkgs=$(go list ./... | grep -v /tests/ | grep -vx 'github.com/veil-runtime/veil/attestation/kbs' | while read -r p; do
	d=$(go list -f '{{.Dir}}' "$p"); grep -lq '^func Benchmark' "$d"/*_test.go 2>/dev/null && echo "$p"; done || true)
if [ -n "$pkgs" ]; then
	echo "== package benchmarks"
	go test -run '^$' -bench . -benchtime 2s -count 1 $pkgs | keep '^(Benchmark|ok|FAIL)'
fi

echo "== issue 14's goals: the figures above beside the goals"
go run ./scripts/benchgoals "$raw"
