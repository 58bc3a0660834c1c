package kbs

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"
)

// object is the part of a Kubernetes object the tests read; encoding/json matches the field
// names without regard to case.
type object struct {
	APIVersion, Kind string
	Metadata         struct {
		Name, Namespace     string
		Labels, Annotations map[string]string
	}
	Spec struct {
		// Deployment
		Replicas *int
		Strategy struct{ Type string }
		Selector struct{ MatchLabels map[string]string } // a Service's selector: checkService
		Template struct {
			Metadata struct{ Labels, Annotations map[string]string }
			Spec     podSpec
		}
		// PersistentVolumeClaim
		AccessModes []string
		// Service
		Type  string
		Ports []struct {
			Name, Protocol, AppProtocol string
			Port                        int
			TargetPort                  any
		}
	}
	raw []byte
}

type podSpec struct {
	AutomountServiceAccountToken *bool
	SecurityContext              struct {
		RunAsNonRoot             *bool
		RunAsUser, FSGroup       *int64
		SeccompProfile           struct{ Type string }
		FSGroupChangePolicy      string
		RunAsGroup               *int64
		SupplementalGroupsPolicy string
	}
	Containers []container
	Volumes    []volume
}

type container struct {
	Name, Image, ImagePullPolicy string
	Command, Args                []string
	Ports                        []struct {
		Name          string
		ContainerPort int
	}
	ReadinessProbe, LivenessProbe *probe
	SecurityContext               struct {
		AllowPrivilegeEscalation, ReadOnlyRootFilesystem, RunAsNonRoot, Privileged *bool
		Capabilities                                                               struct{ Add, Drop []string }
	}
	VolumeMounts []struct {
		Name, MountPath string
		ReadOnly        bool
	}
}

type probe struct {
	HTTPGet *struct {
		Path, Scheme string
		Port         any
	}
}

type volume struct {
	Name                  string
	PersistentVolumeClaim *struct{ ClaimName string }
	EmptyDir              *struct{}
	HostPath              *struct{ Path, Type string }
	Secret                *struct {
		SecretName  string
		DefaultMode *int
		Items       []struct{ Key, Path string }
	}
	ConfigMap *struct {
		Name  string
		Items []struct{ Key, Path string }
	}
}

// parseDocs parses a YAML stream of objects.
func parseDocs(t *testing.T, data []byte) []object {
	t.Helper()
	var out []object
	for _, doc := range bytes.Split(data, []byte("\n---\n")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var o object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			t.Fatalf("%v:\n%s", err, doc)
		}
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			t.Fatalf("not an object:\n%s", doc)
		}
		o.raw = doc
		out = append(out, o)
	}
	return out
}

// Every YAML file here parses, and each is a kustomization, an object or a patch of one.
func TestManifestsParse(t *testing.T) {
	var n int
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".yaml" {
			return err
		}
		n++
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, doc := range bytes.Split(data, []byte("\n---\n")) {
			var m map[string]any
			if err := yaml.UnmarshalStrict(doc, &m); err != nil {
				t.Errorf("%s: %v", p, err)
			}
			if m["apiVersion"] == nil || m["kind"] == nil {
				t.Errorf("%s: no apiVersion or kind", p)
			}
			if m["kind"] == "Namespace" {
				t.Errorf("%s: declares a Namespace: veil-system is declared once, in deploy/namespace.yaml", p)
			}
		}
		return nil
	})
	if err != nil || n < 9 {
		t.Fatalf("walked %d files: %v", n, err)
	}
}

// base reads the base's objects as they are (they name their namespace themselves).
func base(t *testing.T) []object {
	t.Helper()
	var out []object
	for _, f := range []string{"pvc.yaml", "deployment.yaml", "service.yaml"} {
		data, err := os.ReadFile(filepath.Join("base", f))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, parseDocs(t, data)...)
	}
	return out
}

// variant is what a rendering of the KBS must be.
type variant struct {
	tls, sim bool
	data     string // the data volume's kind: pvc, emptyDir, hostPath
	// replicas is the Deployment's (0: 1). More than one needs the keys shared: the Secret
	// veil-kbs-keys mounted in the pod template (so in every replica) and the flags pointing
	// at its files, and a ReadWriteMany claim for the data.
	replicas int
}

func TestBase(t *testing.T) {
	checkKBS(t, base(t), variant{tls: true, data: "pvc"})
}

func find(objs []object, kind string) []object {
	var out []object
	for _, o := range objs {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func subset(a, b map[string]string) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) > 0
}

// checkKBS checks one rendering: objects, flags, files, probes, metrics, security.
func checkKBS(t *testing.T, objs []object, v variant) {
	t.Helper()
	for _, o := range objs {
		if o.Kind == "Namespace" || o.Metadata.Namespace != "veil-system" {
			t.Errorf("%s %s: in namespace %q (a Namespace object, or not in veil-system)", o.Kind, o.Metadata.Name, o.Metadata.Namespace)
		}
	}
	deps, svcs, pvcs := find(objs, "Deployment"), find(objs, "Service"), find(objs, "PersistentVolumeClaim")
	if len(deps) != 1 || len(svcs) != 1 || len(pvcs) != map[bool]int{true: 1}[v.data == "pvc"] {
		t.Fatalf("%d Deployments, %d Services, %d PersistentVolumeClaims", len(deps), len(svcs), len(pvcs))
	}
	d := deps[0]
	pod := d.Spec.Template.Spec
	replicas, strategy := max(v.replicas, 1), "Recreate"
	if replicas > 1 {
		strategy = "RollingUpdate"
		if len(pvcs) != 1 || !slices.Equal(pvcs[0].Spec.AccessModes, []string{"ReadWriteMany"}) {
			t.Errorf("%d replicas without one ReadWriteMany claim for their data", replicas)
		}
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != replicas || d.Spec.Strategy.Type != strategy ||
		!subset(d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels) || len(pod.Containers) != 1 {
		t.Fatalf("Deployment: %s", d.raw)
	}
	c := pod.Containers[0]
	if c.Image != "veil-kbs:dev" || c.ImagePullPolicy != "IfNotPresent" || !slices.Equal(c.Command, []string{"/usr/local/bin/veil-kbs"}) ||
		len(c.Ports) != 1 || c.Ports[0].Name != "kbs" {
		t.Errorf("container: image %s %s, command %q, ports %+v", c.Image, c.ImagePullPolicy, c.Command, c.Ports)
	}
	checkService(t, svcs[0], d, c, v)
	checkVolumes(t, pod, c, v)
	checkFlags(t, pod, c, v)
	checkProbes(t, d, c, v)
	checkSecurity(t, pod, c)
}

func checkService(t *testing.T, s, d object, c container, v variant) {
	t.Helper()
	var sel struct {
		Spec struct{ Selector map[string]string }
	}
	if err := yaml.Unmarshal(s.raw, &sel); err != nil {
		t.Fatal(err)
	}
	want := map[bool]string{true: "https", false: "http"}[v.tls]
	if s.Spec.Type != "ClusterIP" || !subset(sel.Spec.Selector, d.Spec.Template.Metadata.Labels) || len(s.Spec.Ports) != 1 ||
		s.Spec.Ports[0].TargetPort != c.Ports[0].Name || s.Spec.Ports[0].Port != c.Ports[0].ContainerPort ||
		s.Spec.Ports[0].AppProtocol != want {
		t.Errorf("Service does not reach the container's port %+v over %s:\n%s", c.Ports, want, s.raw)
	}
}
