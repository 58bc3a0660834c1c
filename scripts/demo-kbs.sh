#!/usr/bin/env bash
# The attestation part of `make demo`: veil-kbs on loopback with a demo secret, and a guest with
# the simulated TEE (sim) attesting to it with veil-kbs-client, receiving the secret, and being
# refused once its launch measurement is not the expected one. Called by scripts/demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# KBS_PORT picks the port; by default veil-kbs takes a free one and says which in its log.
bin=$PWD/bin dir=$PWD/build/demo-kbs port=${KBS_PORT:-0}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

rm -rf "$dir" && mkdir -p "$dir"
step "a simulated TEE's test chain (what a sim guest signs its reports with)"
"$bin/veil-image" sim-authority --out "$dir/sim" | sed 's/^/  /'

measurement=$(printf 'a1%.0s' $(seq 1 48))   # the launch measurement the relying party expects
cat >"$dir/reference-values.json" <<JSON
{"snp": {"allow_simulated": true, "measurements": ["$measurement"]}}
JSON
cat >"$dir/initdata.toml" <<'TOML'
version = "0.1.0"
algorithm = "sha384"

[data]
"policy.rego" = "package agent_policy\ndefault CheckRequest := true\n"
TOML

step "veil-kbs on loopback: trusts the sim root (explicitly), reference values allow that measurement"
"$bin/veil-kbs" --listen "127.0.0.1:$port" --data "$dir/data" \
	--sim-snp-roots "$dir/sim/sim-snp-roots.pem" --reference-values "$dir/reference-values.json" \
	>"$dir/kbs.log" 2>&1 &
kbs_pid=$!
trap 'kill $kbs_pid 2>/dev/null || true' EXIT
# The URL is the one our own veil-kbs logs once it listens: never whatever else answers on a
# port.
url=
for _ in $(seq 1 100); do
	url=$(sed -n 's/.*msg="veil-kbs: serving" url="\{0,1\}\([^" ]*\).*/\1/p' "$dir/kbs.log" | head -n 1)
	[ -n "$url" ] && break
	if ! kill -0 "$kbs_pid" 2>/dev/null; then
		echo "demo: veil-kbs did not start (127.0.0.1:$port); its log, $dir/kbs.log:" >&2
		sed 's/^/  /' "$dir/kbs.log" >&2
		exit 1
	fi
	sleep 0.1
done
if [ -z "$url" ]; then
	echo "demo: veil-kbs did not say it was serving within 10 s; its log, $dir/kbs.log:" >&2
	sed 's/^/  /' "$dir/kbs.log" >&2
	exit 1
fi
sed -n '1,6p' "$dir/kbs.log" | cut -c1-160 | sed 's/^/  /'
echo "  veil-kbs (pid $kbs_pid) serves $url"

step "the administrator stores a secret (request signed with the Ed25519 admin key made on first start)"
printf 'the demo secret: only an attested guest reads this\n' >"$dir/secret.txt"
"$bin/veil-kbs-client" --url "$url" --admin-key "$dir/data/admin/admin-private-key.pem" \
	set-resource kbs:///demo/key/secret "$dir/secret.txt"
echo "  stored kbs:///demo/key/secret"

step "the administrator binds repository demo to the guests launched with the demo's initdata (tenant isolation)"
"$bin/veil-kbs-client" --url "$url" --admin-key "$dir/data/admin/admin-private-key.pem" \
	bind-repository demo "$dir/initdata.toml"
echo "  bound: $("$bin/veil-kbs-client" --url "$url" --admin-key "$dir/data/admin/admin-private-key.pem" get-repository-binding demo | cut -c1-48)..."

guest=(--url "$url" --tee sim --sim-authority "$dir/sim/sim-authority.pem" --initdata "$dir/initdata.toml")
step "a sim guest attests: RCAR handshake, SNP-format report binding nonce + its key, EAR token"
"$bin/veil-kbs-client" "${guest[@]}" --sim-measurement "$measurement" attest | python3 -c '
import json, sys
c = json.load(sys.stdin); s = c["submods"]["cpu0"]
ev = s.get("ear.veraison.annotated-evidence", {})
print("  status:", s["ear.status"], " policy:", s.get("ear.appraisal-policy-id"))
print("  trustworthiness:", s.get("ear.trustworthiness-vector"))
print("  init_data digest:", (ev.get("init_data") or "")[:48] + "...")
print("  simulated:", ev.get("simulated", ev.get("snp", {}).get("simulated") if isinstance(ev.get("snp"), dict) else "see claims"))'

step "the same guest fetches the secret: a JWE to its ephemeral key, decrypted in the guest"
"$bin/veil-kbs-client" "${guest[@]}" --sim-measurement "$measurement" get-resource kbs:///demo/key/secret | sed 's/^/  /'

step "a guest with another launch measurement is refused"
other=$(printf 'b2%.0s' $(seq 1 48))
if "$bin/veil-kbs-client" "${guest[@]}" --sim-measurement "$other" get-resource kbs:///demo/key/secret 2>"$dir/refused.txt"; then
	echo "  UNEXPECTED: the secret was released" && exit 1
fi
sed 's/^/  /' "$dir/refused.txt"

step "a guest of another tenant (the right measurement, another initdata) is refused the demo repository"
sed 's/default CheckRequest := true/default CheckRequest := false/' "$dir/initdata.toml" >"$dir/other-initdata.toml"
other_guest=(--url "$url" --tee sim --sim-authority "$dir/sim/sim-authority.pem" --initdata "$dir/other-initdata.toml")
if "$bin/veil-kbs-client" "${other_guest[@]}" --sim-measurement "$measurement" get-resource kbs:///demo/key/secret 2>"$dir/refused.txt"; then
	echo "  UNEXPECTED: the secret was released to another tenant" && exit 1
fi
sed 's/^/  /' "$dir/refused.txt"
kill $kbs_pid; wait $kbs_pid 2>/dev/null || true
trap - EXIT
