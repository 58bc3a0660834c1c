#!/usr/bin/env bash
# The confidential part of `make demo`: tests/cri TestConfidentialPod, narrated. An image owner
# encrypts an image with skopeo through veil-keyprovider (the key goes to veil-kbs and nowhere
# else) and signs it with cosign; a secret is sealed with veil-kbs-client; veil-genpolicy puts
# guest pull, the image security policy and the sealed variable into the pod's initdata. The
# pod then runs through containerd 2.4's CRI: containerd fetches the manifest and config only
# (veil-snapshotter), the sim-TEE guest attests to the KBS, checks the signature, decrypts the
# layers and unseals the secret, and the registry's log shows no layer fetched by the host.
# Every step checks what it shows; everything it made is gone at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bold() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

bold "a confidential pod: encrypted and signed image, sealed secret, pulled only in the guest"
set +e
VEIL_IMAGE=${IMAGE:-$PWD/build/image} VEIL_BIN=$PWD/bin \
	go test -tags e2e -count=1 -v -timeout 20m -run '^TestConfidentialPod$' ./tests/cri/ 2>&1 |
	awk '
		/^ +confidential_test\.go:[0-9]+:/ { sub(/^ +confidential_test\.go:[0-9]+: /, "  "); print; next }
		/^ +snapshotter_test\.go:[0-9]+:/ || /^ +sealed_test\.go:[0-9]+:/ { sub(/^ +[a-z_]+_test\.go:[0-9]+: /, "  "); print; next }
		/^--- (PASS|FAIL)/ || /^(ok|FAIL)[ \t]/ { print; next }
		/^        / { print "  " $0 }
	'
rc=${PIPESTATUS[0]}
set -e
exit "$rc"
