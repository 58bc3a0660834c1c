package kbs

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/attestation/kbs"
	"github.com/veil-runtime/veil/attestation/kbs/daemon"
)

// mountOf returns the volume mounted at the longest mount path that holds p.
func mountOf(pod podSpec, c container, p string) (mountPath string, v *volume) {
	for _, m := range c.VolumeMounts {
		if (p == m.MountPath || strings.HasPrefix(p, m.MountPath+"/")) && len(m.MountPath) > len(mountPath) {
			for i := range pod.Volumes {
				if pod.Volumes[i].Name == m.Name {
					mountPath, v = m.MountPath, &pod.Volumes[i]
				}
			}
		}
	}
	return mountPath, v
}

// checkVolumes: each mount has its volume and each volume is mounted; the data volume is of
// the variant's kind; the TLS Secret exists exactly with TLS.
func checkVolumes(t *testing.T, pod podSpec, c container, v variant) {
	t.Helper()
	mounted := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mounted[m.Name] = true
		if !slices.ContainsFunc(pod.Volumes, func(vol volume) bool { return vol.Name == m.Name }) {
			t.Errorf("mount %s: no volume %s", m.MountPath, m.Name)
		}
	}
	var tls bool
	for _, vol := range pod.Volumes {
		if !mounted[vol.Name] {
			t.Errorf("volume %s is not mounted", vol.Name)
		}
		tls = tls || (vol.Secret != nil && vol.Secret.SecretName == "veil-kbs-tls")
	}
	if tls != v.tls {
		t.Errorf("Secret veil-kbs-tls mounted: %t, want %t", tls, v.tls)
	}
	_, data := mountOf(pod, c, "/var/lib/veil-kbs")
	if data == nil {
		t.Fatal("nothing mounted at /var/lib/veil-kbs")
	}
	got := map[bool]string{data.PersistentVolumeClaim != nil: "pvc", data.EmptyDir != nil: "emptyDir", data.HostPath != nil: "hostPath"}[true]
	if n := btoi(data.PersistentVolumeClaim != nil) + btoi(data.EmptyDir != nil) + btoi(data.HostPath != nil); n != 1 || got != v.data {
		t.Errorf("data volume %+v: want one %s", *data, v.data)
	}
	if data.PersistentVolumeClaim != nil && data.PersistentVolumeClaim.ClaimName != "veil-kbs-data" {
		t.Errorf("data claim %s", data.PersistentVolumeClaim.ClaimName)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fileFlags are the flags that name a file (and --data a directory).
var fileFlags = []string{"tls-cert", "tls-key", "admin-public-key", "resource-policy", "snp-roots", "tdx-roots",
	"sim-snp-roots", "sim-tdx-roots", "reference-values", "attestation-policy", "config", "session-key-file", "token-key-file"}

// checkFlags parses the container's arguments with veil-kbs's own flag set, each file placed
// under a temporary root where the volumes put it, and checks what each names.
func checkFlags(t *testing.T, pod podSpec, c container, v variant) {
	t.Helper()
	root := t.TempDir()
	var args []string
	for _, a := range c.Args {
		name, val, ok := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if !ok || !strings.HasPrefix(a, "--") {
			t.Errorf("argument %q: write flags as --name=value", a)
			args = append(args, a)
			continue
		}
		if name == "data" || slices.Contains(fileFlags, name) {
			checkFile(t, pod, c, name, val)
			p := filepath.Join(root, val)
			if name == "data" {
				_ = os.MkdirAll(p, 0o700)
			} else {
				_ = os.MkdirAll(filepath.Dir(p), 0o700)
				_ = os.WriteFile(p, nil, 0o600)
			}
			val = p
		}
		args = append(args, "--"+name+"="+val)
	}
	cfg, err := daemon.ParseFlags("veil-kbs", args)
	if err != nil {
		t.Fatalf("veil-kbs refuses %q: %v", c.Args, err)
	}
	_, port, _ := strings.Cut(cfg.Listen, ":")
	if cfg.Listen != ":"+port || port != strconv.Itoa(c.Ports[0].ContainerPort) {
		t.Errorf("--listen=%s: want every address on the container port %d", cfg.Listen, c.Ports[0].ContainerPort)
	}
	checkKeys(t, pod, c, root, cfg, v)
	a := cfg.Attestation
	if cfg.Data != filepath.Join(root, "/var/lib/veil-kbs") || (cfg.TLSCert != "") != v.tls ||
		(a.SimSNPRoots != "" || a.SimTDXRoots != "") != v.sim || len(cfg.AdminPublicKeys) != 1 ||
		a.ReferenceValues == "" || a.FetchCollateral {
		t.Errorf("flags %q: data %s, TLS %t (want %t), sim roots %t (want %t), %d administrator keys, reference values %q",
			c.Args, cfg.Data, cfg.TLSCert != "", v.tls, a.SimSNPRoots != "", v.sim, len(cfg.AdminPublicKeys), a.ReferenceValues)
	}
}

// keysSecret is the Secret that holds the keys replicas share.
const keysSecret = "veil-kbs-keys"

// checkKeys: with several replicas, the session key and the token-signing key are files of
// the Secret veil-kbs-keys, mounted read-only in the pod template (so in every replica),
// readable by nobody but the pod's user and group; with one, veil-kbs makes its own.
func checkKeys(t *testing.T, pod podSpec, c container, root string, cfg *daemon.Config, v variant) {
	t.Helper()
	if v.replicas <= 1 {
		if cfg.SessionKeyFile != "" || cfg.TokenKeyFile != "" {
			t.Errorf("one replica with key files %q, %q", cfg.SessionKeyFile, cfg.TokenKeyFile)
		}
		return
	}
	for flag, f := range map[string]string{"session-key-file": cfg.SessionKeyFile, "token-key-file": cfg.TokenKeyFile} {
		if f == "" {
			t.Errorf("%d replicas without --%s: each would make its own key", v.replicas, flag)
			continue
		}
		_, vol := mountOf(pod, c, strings.TrimPrefix(f, root))
		if vol == nil || vol.Secret == nil || vol.Secret.SecretName != keysSecret {
			t.Errorf("--%s=%s is not a file of the Secret %s", flag, f, keysSecret)
			continue
		}
		if m := vol.Secret.DefaultMode; m == nil || *m&0o027 != 0 {
			t.Errorf("Secret %s mounted with mode %v: veil-kbs refuses key files others may read", keysSecret, m)
		}
	}
}

// checkFile: the file a flag names is where a volume puts it: the data volume for --data,
// else a read-only Secret or ConfigMap that has it (its items, or a kubernetes.io/tls key).
func checkFile(t *testing.T, pod podSpec, c container, flag, p string) {
	t.Helper()
	mp, vol := mountOf(pod, c, p)
	if vol == nil {
		t.Errorf("--%s=%s: no volume holds it", flag, p)
		return
	}
	if flag == "data" {
		if mp != p {
			t.Errorf("--data=%s: the data volume is mounted at %s", p, mp)
		}
		return
	}
	rel := strings.TrimPrefix(p, mp+"/")
	var keys []string
	switch {
	case vol.Secret != nil && vol.Secret.SecretName == "veil-kbs-tls":
		keys = []string{"tls.crt", "tls.key"}
	case vol.Secret != nil:
		for _, it := range vol.Secret.Items {
			keys = append(keys, it.Path)
		}
	case vol.ConfigMap != nil:
		for _, it := range vol.ConfigMap.Items {
			keys = append(keys, it.Path)
		}
	}
	if !slices.Contains(keys, rel) || path.Dir(p) != mp {
		t.Errorf("--%s=%s: volume %s (at %s) holds %q", flag, p, vol.Name, mp, keys)
	}
	for _, m := range c.VolumeMounts {
		if m.MountPath == mp && !m.ReadOnly {
			t.Errorf("--%s: %s is mounted read-write", flag, mp)
		}
	}
}

// checkProbes: readiness and liveness on the health endpoint over the scheme served, and the
// Prometheus annotations on the same port.
func checkProbes(t *testing.T, d object, c container, v variant) {
	t.Helper()
	scheme := map[bool]string{true: "HTTPS", false: "HTTP"}[v.tls]
	for name, pr := range map[string]*probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != kbs.HealthPath ||
			pr.HTTPGet.Port != c.Ports[0].Name || pr.HTTPGet.Scheme != scheme {
			t.Errorf("%s probe: want GET %s on port %s over %s", name, kbs.HealthPath, c.Ports[0].Name, scheme)
		}
	}
	ann := d.Spec.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" ||
		ann["prometheus.io/port"] != strconv.Itoa(c.Ports[0].ContainerPort) || ann["prometheus.io/scheme"] != strings.ToLower(scheme) {
		t.Errorf("Prometheus annotations %v", ann)
	}
	if v.sim && d.Spec.Template.Metadata.Labels["veil.dev/never-for-production"] != "true" {
		t.Error("the sim overlay's pod is not labelled veil.dev/never-for-production")
	}
}

// checkSecurity: non-root, no privilege escalation, no capability, read-only root, seccomp.
func checkSecurity(t *testing.T, pod podSpec, c container) {
	t.Helper()
	ps, cs := pod.SecurityContext, c.SecurityContext
	isTrue := func(b *bool) bool { return b != nil && *b }
	isFalse := func(b *bool) bool { return b != nil && !*b }
	if !isTrue(ps.RunAsNonRoot) || ps.RunAsUser == nil || *ps.RunAsUser == 0 || ps.FSGroup == nil ||
		ps.SeccompProfile.Type != "RuntimeDefault" || !isFalse(pod.AutomountServiceAccountToken) {
		t.Error("pod: want runAsNonRoot, a runAsUser other than 0, an fsGroup, seccomp RuntimeDefault, no service account token")
	}
	if !isFalse(cs.AllowPrivilegeEscalation) || !isTrue(cs.ReadOnlyRootFilesystem) || !isTrue(cs.RunAsNonRoot) ||
		!isFalse(cs.Privileged) || !slices.Equal(cs.Capabilities.Drop, []string{"ALL"}) || len(cs.Capabilities.Add) > 0 {
		t.Error("container: want allowPrivilegeEscalation false, readOnlyRootFilesystem, runAsNonRoot, privileged false, capabilities drop [ALL] and no add")
	}
	if mp, vol := mountOf(pod, c, "/tmp"); mp != "/tmp" || vol.EmptyDir == nil {
		t.Error("no emptyDir at /tmp under the read-only root")
	}
}

// The flag check means something: veil-kbs's flag set refuses a flag it does not have.
func TestUnknownFlagRefused(t *testing.T) {
	stderr := os.Stderr // the flag set prints its usage there
	os.Stderr, _ = os.Open(os.DevNull)
	defer func() { os.Stderr.Close(); os.Stderr = stderr }()
	if _, err := daemon.ParseFlags("veil-kbs", []string{"--data=" + t.TempDir(), "--tls-certificate=x"}); err == nil {
		t.Fatal("--tls-certificate accepted")
	}
}
