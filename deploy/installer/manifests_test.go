package installer_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/veil-runtime/veil/deploy/installer"
	"github.com/veil-runtime/veil/deploy/installer/containerdcfg"
	"github.com/veil-runtime/veil/deploy/installer/internal/fakehost"
	"github.com/veil-runtime/veil/shim/config"
)

// object is the part of a Kubernetes object the checks read.
type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	// RuntimeClass
	Handler  string `json:"handler"`
	Overhead struct {
		PodFixed map[string]string `json:"podFixed"`
	} `json:"overhead"`
	Scheduling struct {
		NodeSelector map[string]string `json:"nodeSelector"`
	} `json:"scheduling"`
	// ClusterRole, ClusterRoleBinding
	Rules []struct {
		APIGroups []string `json:"apiGroups"`
		Resources []string `json:"resources"`
		Verbs     []string `json:"verbs"`
	} `json:"rules"`
	RoleRef  struct{ Kind, Name string }              `json:"roleRef"`
	Subjects []struct{ Kind, Name, Namespace string } `json:"subjects"`
	// DaemonSet
	Spec struct {
		Template struct {
			Spec podSpec `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
	// Kustomization
	Resources []string `json:"resources"`
}

type podSpec struct {
	ServiceAccountName string `json:"serviceAccountName"`
	HostPID            bool   `json:"hostPID"`
	Tolerations        []struct {
		Operator string `json:"operator"`
	} `json:"tolerations"`
	Containers []struct {
		Image           string   `json:"image"`
		ImagePullPolicy string   `json:"imagePullPolicy"`
		Command         []string `json:"command"`
		Env             []struct {
			Name      string `json:"name"`
			Value     string `json:"value"`
			ValueFrom *struct {
				FieldRef struct {
					FieldPath string `json:"fieldPath"`
				} `json:"fieldRef"`
			} `json:"valueFrom"`
		} `json:"env"`
		SecurityContext struct {
			Privileged bool `json:"privileged"`
		} `json:"securityContext"`
		ReadinessProbe *struct {
			Exec struct {
				Command []string `json:"command"`
			} `json:"exec"`
		} `json:"readinessProbe"`
		VolumeMounts []struct {
			Name      string `json:"name"`
			MountPath string `json:"mountPath"`
		} `json:"volumeMounts"`
	} `json:"containers"`
	Volumes []struct {
		Name     string `json:"name"`
		HostPath *struct {
			Path string `json:"path"`
		} `json:"hostPath"`
	} `json:"volumes"`
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// manifests parses every YAML file under deploy/ (every document must parse) and returns
// the objects of the installer's own files.
func manifests(t *testing.T) map[string]*object {
	t.Helper()
	mine := map[string]bool{"namespace.yaml": true, "installer.yaml": true, "runtimeclasses.yaml": true, "kustomization.yaml": true}
	objs := map[string]*object{}
	n := 0
	err := filepath.Walk("..", func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || !(strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, doc := range docSep.Split(string(data), -1) {
			var o object
			if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
				t.Errorf("%s, document %d: %v", p, i+1, err)
				continue
			}
			n++
			if filepath.Dir(p) == ".." && mine[filepath.Base(p)] && o.Kind != "" {
				objs[o.Kind+"/"+o.Metadata.Name] = &o
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no YAML found under deploy/")
	}
	return objs
}

func mebibytes(t *testing.T, q string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSuffix(q, "Mi"))
	if err != nil || !strings.HasSuffix(q, "Mi") {
		t.Fatalf("memory %q: the test reads Mi quantities only", q)
	}
	return n
}

func TestRuntimeClasses(t *testing.T) {
	objs := manifests(t)
	shipped, err := config.Load("../../shim/config/configuration.toml")
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]bool{}
	for _, l := range installer.Labels() {
		labels[l] = true
	}
	// The handlers the drop-in declares when every handler is installed.
	h, _ := fakehost.New(t, fakehost.Options{})
	cc, err := containerdcfg.Read(h, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	spec := containerdcfg.Spec{ShimPath: "/opt/veil/bin/containerd-shim-veil-v2"}
	for _, hd := range installer.Handlers {
		spec.Runtimes = append(spec.Runtimes, containerdcfg.Runtime{Name: hd.Name, ConfigPath: hd.ConfigPath()})
	}
	drop, err := cc.Render(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, hd := range installer.Handlers {
		rc := objs["RuntimeClass/"+hd.Name]
		if rc == nil {
			t.Errorf("no RuntimeClass %s", hd.Name)
			continue
		}
		if rc.APIVersion != "node.k8s.io/v1" || rc.Handler != hd.Name {
			t.Errorf("RuntimeClass %s: apiVersion %s handler %q", hd.Name, rc.APIVersion, rc.Handler)
		}
		if !strings.Contains(string(drop), ".containerd.runtimes."+rc.Handler+"]") {
			t.Errorf("RuntimeClass %s's handler %q is not a runtime of the drop-in", hd.Name, rc.Handler)
		}
		sel := rc.Scheduling.NodeSelector
		if len(sel) != 1 || sel[hd.Label] != "true" {
			t.Errorf("RuntimeClass %s selects %v, want %s=true only", hd.Name, sel, hd.Label)
		}
		for k := range sel {
			if !labels[k] {
				t.Errorf("RuntimeClass %s selects %s, a label the installer never sets", hd.Name, k)
			}
		}
		if mem := mebibytes(t, rc.Overhead.PodFixed["memory"]); mem < int(shipped.Hypervisor.MemoryMiB)+64 {
			t.Errorf("RuntimeClass %s: podFixed memory %dMi does not cover the VM's %d MiB plus QEMU's own", hd.Name, mem,
				shipped.Hypervisor.MemoryMiB)
		}
		if rc.Overhead.PodFixed["cpu"] == "" {
			t.Errorf("RuntimeClass %s: no podFixed cpu", hd.Name)
		}
	}
	for k, o := range objs {
		if strings.HasPrefix(k, "RuntimeClass/") && !strings.HasPrefix(o.Handler, "veil") {
			t.Errorf("%s has handler %q", k, o.Handler)
		}
	}
}

func TestInstallerManifests(t *testing.T) {
	objs := manifests(t)
	if objs["Namespace/veil-system"] == nil {
		t.Error("no Namespace veil-system")
	}
	ds := objs["DaemonSet/veil-installer"]
	if ds == nil || ds.Metadata.Namespace != "veil-system" {
		t.Fatalf("no DaemonSet veil-installer in veil-system: %+v", ds)
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostPID || len(pod.Containers) != 1 || len(pod.Tolerations) == 0 || pod.Tolerations[0].Operator != "Exists" {
		t.Errorf("pod spec: hostPID %v, %d containers, tolerations %v", pod.HostPID, len(pod.Containers), pod.Tolerations)
	}
	c := pod.Containers[0]
	if c.Image != "veil-installer:dev" || c.ImagePullPolicy != "IfNotPresent" || !c.SecurityContext.Privileged {
		t.Errorf("container: image %s pull %s privileged %v", c.Image, c.ImagePullPolicy, c.SecurityContext.Privileged)
	}
	if len(c.Command) != 2 || filepath.Base(c.Command[0]) != "veil-deploy" || c.Command[1] != "run" {
		t.Errorf("command %v, want veil-deploy run", c.Command)
	}
	if c.ReadinessProbe == nil || strings.Join(c.ReadinessProbe.Exec.Command[1:], " ") != "ready" {
		t.Errorf("readiness probe %+v, want veil-deploy ready", c.ReadinessProbe)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		if e.ValueFrom != nil {
			env[e.Name] = "fieldRef:" + e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["NODE_NAME"] != "fieldRef:spec.nodeName" || env["VEIL_ENABLE_SIM"] != "false" || env["VEIL_UNINSTALL_ON_EXIT"] != "false" {
		t.Errorf("env %v: want NODE_NAME from spec.nodeName, the sim and uninstall-on-exit off", env)
	}
	hostVol := ""
	for _, v := range pod.Volumes {
		if v.HostPath != nil && v.HostPath.Path == "/" {
			hostVol = v.Name
		}
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		mounted = mounted || (m.Name == hostVol && m.MountPath == "/host")
	}
	if hostVol == "" || !mounted {
		t.Errorf("the host's / is not mounted at /host: volumes %+v mounts %+v", pod.Volumes, c.VolumeMounts)
	}
	sa := objs["ServiceAccount/"+pod.ServiceAccountName]
	role, binding := objs["ClusterRole/veil-installer"], objs["ClusterRoleBinding/veil-installer"]
	if sa == nil || role == nil || binding == nil {
		t.Fatalf("service account %q, cluster role, binding: %v %v %v", pod.ServiceAccountName, sa, role, binding)
	}
	if len(role.Rules) != 1 || strings.Join(role.Rules[0].Resources, ",") != "nodes" ||
		strings.Join(role.Rules[0].Verbs, ",") != "get,patch" {
		t.Errorf("cluster role rules %+v: want get and patch on nodes only", role.Rules)
	}
	if binding.RoleRef.Name != "veil-installer" || len(binding.Subjects) != 1 ||
		binding.Subjects[0].Name != sa.Metadata.Name || binding.Subjects[0].Namespace != "veil-system" {
		t.Errorf("binding %+v", binding)
	}
}

func TestKustomization(t *testing.T) {
	var k object
	data, err := os.ReadFile("../kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"namespace.yaml": false, "installer.yaml": false, "runtimeclasses.yaml": false}
	for _, r := range k.Resources {
		if _, err := os.Stat(filepath.Join("..", r)); err != nil {
			t.Errorf("kustomization lists %s: %v", r, err)
		}
		want[r] = true
	}
	for r, listed := range want {
		if !listed {
			t.Errorf("kustomization does not list %s", r)
		}
	}
}
