//go:build e2e

package cri

import (
	"crypto/ecdsa"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/agent/imagepull/imagepulltest"
	"github.com/veil-runtime/veil/kbs-client/sealed"
	"github.com/veil-runtime/veil/shim/pod"
)

// The plaintexts of TestSealedSecrets: none may appear on the host.
const (
	sealedEnvPlain  = "envelope-api-key-5d1f"
	sealedVarPlain  = "db-password-93ab"
	sealedFilePlain = "file-token-0c7e"
	sealedKid       = "kbs:///default/sealed/key"
)

// sealedPodYAML: app gets API_KEY as a sealed envelope written in the YAML, DB_PASSWORD from
// a secretKeyRef that io.veil.sealed-env marks sealed, and a Secret volume whose token file
// is sealed; missing's API_KEY names a resource the KBS does not hold.
const sealedPodYAML = `apiVersion: v1
kind: Pod
metadata:
  name: sealed
  annotations:
    io.veil.sealed-env: DB_PASSWORD
    io.veil.sealed-volumes: sealed
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
  - name: app
    image: %[1]s
    command: ["sh", "-c", "echo env=$API_KEY/$DB_PASSWORD; echo file=$(cat /etc/sealed/token); echo sealed-done; exec sleep 3600"]
    env:
    - {name: API_KEY, value: "%[2]s"}
    - name: DB_PASSWORD
      valueFrom: {secretKeyRef: {name: db, key: password}}
    volumeMounts:
    - {name: sealed, mountPath: /etc/sealed, readOnly: true}
  - name: missing
    image: %[1]s
    command: ["sh", "-c", "echo env=$API_KEY; exec sleep 3600"]
    env:
    - {name: API_KEY, value: "%[3]s"}
  volumes:
  - name: sealed
    secret: {secretName: sealed}
`

// TestSealedSecrets runs a sim-TEE pod (veil-pull handler) whose initdata names a KBS holding
// a sealed-secret verification key, a secret and a KEK: the container's environment shows the
// plaintext of a sealed envelope and of a sealed vault secret, and its mounted Secret volume
// the plaintext of a sealed file, while the host's share holds only the sealed values. A
// sealed value naming a resource the KBS lacks fails the container's creation with the
// variable and the resource named; a host that swaps a sealed variable for a plaintext is
// refused by the policy, and one that swaps the sealed file of the volume the pod marked
// sealed (io.veil.sealed-volumes) by the agent, under the policy's obligation.
func TestSealedSecrets(t *testing.T) {
	_, gw, kbs, _ := simPullPod(t, 0)
	key, err := sealed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := sealed.PublicJWK(&key.PublicKey)
	kek := imagepulltest.NewKEK()
	kbs.Put(t, "default/sealed/key", pub)
	kbs.Put(t, "default/kek/1", kek)
	kbs.Put(t, "default/secret/db", []byte(sealedVarPlain))
	kbs.Put(t, "default/secret/file", []byte(sealedFilePlain))
	kbsURL := fmt.Sprintf("http://%s:%d", gatewayIP, kbs.Port())

	es, err := sealed.NewEnvelope([]byte(sealedEnvPlain), kek, "kbs:///default/kek/1", nil)
	if err != nil {
		t.Fatal(err)
	}
	apiKey := seal(t, es, key)
	dbPassword := sealVault(t, "kbs:///default/secret/db", key)
	missing := sealVault(t, "kbs:///default/secret/missing", key)
	vol := secretVolume(t, map[string]string{"token": sealVault(t, "kbs:///default/secret/file", key) + "\n"})

	busybox := gw + "/veil-test/busybox:latest"
	crictl(t, "pull", busybox)
	veilTOML := fmt.Sprintf("[image]\ninsecure_registries = [%q]\n[kbs]\nurl = %q\nsealed_secret_keys = [%q]\n", gw, kbsURL, sealedKid)
	yaml := fmt.Sprintf(sealedPodYAML, env.registryHost+"/veil-test/busybox:latest", apiKey, missing)
	podID, podCfg := runGenpolicyPod(t, "sealed", yaml, veilTOML, false)
	vm := pod.VMID(criNamespace, podID)

	appCmd := []string{"sh", "-c", "echo env=$API_KEY/$DB_PASSWORD; echo file=$(cat /etc/sealed/token); echo sealed-done; exec sleep 3600"}
	appEnv := func(db string) []map[string]string {
		return []map[string]string{{"key": "API_KEY", "value": apiKey}, {"key": "DB_PASSWORD", "value": db}}
	}
	appConfig := func(attempt int, db, vol string) string {
		p := userImage(t, policyContainerConfig(t, "app", attempt, busybox, appEnv(db), appCmd), busybox)
		return editConfig(t, p, func(c map[string]any) {
			c["mounts"] = append(c["mounts"].([]any), map[string]any{"container_path": "/etc/sealed", "host_path": vol, "readonly": true})
		})
	}
	cid := crictl(t, "create", podID, appConfig(0, dbPassword, vol), podCfg)
	crictl(t, "start", cid)
	out := waitLog(t, cid, "sealed-done")
	for _, want := range []string{"env=" + sealedEnvPlain + "/" + sealedVarPlain, "file=" + sealedFilePlain} {
		if !strings.Contains(out, want) {
			t.Fatalf("the container's output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("the container sees the plaintexts of a sealed envelope, a sealed vault secret and a sealed file")
	// The host's side of the pod (its share, with the Secret volume) holds sealed values only.
	checkNoPlaintext(t, pod.DirOf(vm), sealedEnvPlain, sealedVarPlain, sealedFilePlain)

	// A sealed value naming a resource the KBS does not hold: the creation fails naming the
	// variable and the resource, and the pod keeps running.
	bad := crictl(t, "create", podID, userImage(t, policyContainerConfig(t, "missing", 0, busybox,
		[]map[string]string{{"key": "API_KEY", "value": missing}}, []string{"sh", "-c", "echo env=$API_KEY; exec sleep 3600"}), busybox), podCfg)
	stdout, errOut, err := env.crictl(2*time.Minute, "start", bad)
	if err == nil {
		t.Fatalf("a container whose sealed secret names a missing resource started (stdout %q)", stdout)
	}
	if !strings.Contains(errOut, "process.env API_KEY: the sealed value cannot be unsealed") || !strings.Contains(errOut, "kbs:///default/secret/missing") {
		t.Fatalf("missing resource: want an error naming API_KEY and the resource, got %q", errOut)
	}
	t.Logf("missing resource refused: %s", lineWith(errOut, "API_KEY"))
	crictl(t, "rm", "-f", bad)

	// The host swaps the sealed DB_PASSWORD for a plaintext of its choosing: the policy refuses.
	swapped := crictl(t, "create", podID, appConfig(1, "host-chosen-password", vol), podCfg)
	if _, errOut, err = env.crictl(2*time.Minute, "start", swapped); err == nil {
		t.Fatal("a container whose sealed variable the host replaced by a plaintext started")
	}
	if !strings.Contains(errOut, "environment variable DB_PASSWORD must carry a sealed secret") || strings.Contains(errOut, "host-chosen-password") {
		t.Fatalf("swapped value: want the policy's refusal naming DB_PASSWORD (and not its value), got %q", errOut)
	}
	t.Logf("plaintext swap refused: %s", lineWith(errOut, "DB_PASSWORD"))
	crictl(t, "rm", "-f", swapped)

	// The host swaps the sealed file of the volume for a plaintext: the agent refuses it under
	// the policy's obligation sealed_mounts, naming the file.
	plainVol := secretVolume(t, map[string]string{"token": "host-chosen-token"})
	swappedFile := crictl(t, "create", podID, appConfig(2, dbPassword, plainVol), podCfg)
	if _, errOut, err = env.crictl(2*time.Minute, "start", swappedFile); err == nil {
		t.Fatal("a container whose sealed file the host replaced by a plaintext started")
	}
	if !strings.Contains(errOut, "/token is not a sealed secret, and the policy requires every file of this mount sealed") || strings.Contains(errOut, "host-chosen-token") {
		t.Fatalf("swapped file: want the agent's refusal naming the file (and not its content), got %q", errOut)
	}
	t.Logf("plaintext file swap refused: %s", lineWith(errOut, "not a sealed secret"))
	crictl(t, "rm", "-f", swappedFile)
	if st := crictl(t, "inspect", "-o", "go-template", "--template", "{{.status.state}}", cid); st != "CONTAINER_RUNNING" {
		t.Fatalf("after the refusals: state %q", st)
	}
	crictl(t, "stopp", podID)
	crictl(t, "rmp", podID)
	checkGone(t, podID, vm)
}

func seal(t *testing.T, s *sealed.Secret, key *ecdsa.PrivateKey) string {
	t.Helper()
	v, err := sealed.Seal(s, key, sealedKid)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func sealVault(t *testing.T, uri string, key *ecdsa.PrivateKey) string {
	t.Helper()
	s, err := sealed.NewVault(uri)
	if err != nil {
		t.Fatal(err)
	}
	return seal(t, s, key)
}

// secretVolume writes a directory laid out as the kubelet writes a Secret volume (files in a
// timestamped directory, reached through ..data links) and returns it.
func secretVolume(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sealed-volume")
	data := filepath.Join(dir, "..2026_12_07_06_00_00.000000001")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(data, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("..data/"+name, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(data), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkNoPlaintext fails when a regular file below dir holds one of plains.
func checkNoPlaintext(t testing.TB, dir string, plains ...string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil || fi.Size() > 64<<20 {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		n++
		for _, s := range plains {
			if strings.Contains(string(b), s) {
				t.Errorf("the host's %s holds a plaintext", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the host's pod directory %s: %d files, no plaintext", dir, n)
}
