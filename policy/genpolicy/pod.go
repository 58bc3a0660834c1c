package genpolicy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"

	"sigs.k8s.io/yaml"
)

// The parts of the Kubernetes API that genpolicy reads. Decoding into these narrow types
// (rather than k8s.io/api) keeps the dependency small; the output YAML is written from the
// generic document, so fields not listed here are kept as they were.

type podSpec struct {
	Containers                   []container         `json:"containers"`
	InitContainers               []container         `json:"initContainers"`
	SecurityContext              *podSecurityContext `json:"securityContext"`
	HostNetwork                  bool                `json:"hostNetwork"`
	HostPID                      bool                `json:"hostPID"`
	HostIPC                      bool                `json:"hostIPC"`
	EnableServiceLinks           *bool               `json:"enableServiceLinks"`
	AutomountServiceAccountToken *bool               `json:"automountServiceAccountToken"`
	ShareProcessNamespace        *bool               `json:"shareProcessNamespace"`
	Volumes                      []podVolume         `json:"volumes"`

	// sealedEnv and sealedVolumes are the names of the pod's SealedEnvAnnotation and
	// SealedVolumesAnnotation (set by workload).
	sealedEnv, sealedVolumes []string
}

type container struct {
	Name                   string           `json:"name"`
	Image                  string           `json:"image"`
	Command                []string         `json:"command"`
	Args                   []string         `json:"args"`
	WorkingDir             string           `json:"workingDir"`
	Env                    []envVar         `json:"env"`
	EnvFrom                []map[string]any `json:"envFrom"`
	VolumeMounts           []volumeMount    `json:"volumeMounts"`
	SecurityContext        *securityContext `json:"securityContext"`
	LivenessProbe          *probe           `json:"livenessProbe"`
	ReadinessProbe         *probe           `json:"readinessProbe"`
	StartupProbe           *probe           `json:"startupProbe"`
	Lifecycle              *lifecycle       `json:"lifecycle"`
	Stdin                  bool             `json:"stdin"`
	TTY                    bool             `json:"tty"`
	TerminationMessagePath string           `json:"terminationMessagePath"`
	Ports                  []containerPort  `json:"ports"`
}

// containerPort is a port a container declares; port forwarding may reach its TCP ones.
type containerPort struct {
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
}

type envVar struct {
	Name      string         `json:"name"`
	Value     string         `json:"value"`
	ValueFrom map[string]any `json:"valueFrom"`
}

type volumeMount struct {
	Name        string `json:"name"`
	MountPath   string `json:"mountPath"`
	ReadOnly    bool   `json:"readOnly"`
	SubPath     string `json:"subPath"`
	SubPathExpr string `json:"subPathExpr"`
}

type securityContext struct {
	Privileged               *bool           `json:"privileged"`
	AllowPrivilegeEscalation *bool           `json:"allowPrivilegeEscalation"`
	RunAsNonRoot             *bool           `json:"runAsNonRoot"`
	ReadOnlyRootFilesystem   *bool           `json:"readOnlyRootFilesystem"`
	RunAsUser                *int64          `json:"runAsUser"`
	RunAsGroup               *int64          `json:"runAsGroup"`
	Capabilities             *capabilities   `json:"capabilities"`
	SeccompProfile           *seccompProfile `json:"seccompProfile"`
}

type seccompProfile struct {
	Type             string `json:"type"`
	LocalhostProfile string `json:"localhostProfile"`
}

type capabilities struct {
	Add  []string `json:"add"`
	Drop []string `json:"drop"`
}

type podSecurityContext struct {
	RunAsUser                *int64          `json:"runAsUser"`
	RunAsGroup               *int64          `json:"runAsGroup"`
	RunAsNonRoot             *bool           `json:"runAsNonRoot"`
	Sysctls                  []sysctl        `json:"sysctls"`
	FSGroup                  *int64          `json:"fsGroup"`
	SupplementalGroups       []int64         `json:"supplementalGroups"`
	SupplementalGroupsPolicy string          `json:"supplementalGroupsPolicy"`
	SeccompProfile           *seccompProfile `json:"seccompProfile"`
}

type sysctl struct {
	Name string `json:"name"`
}

type execAction struct {
	Command []string `json:"command"`
}

type probe struct {
	Exec *execAction `json:"exec"`
}

type handler struct {
	Exec *execAction `json:"exec"`
}

type lifecycle struct {
	PostStart *handler `json:"postStart"`
	PreStop   *handler `json:"preStop"`
}

// templatePaths says where each workload kind keeps its pod template ("" for the pod itself).
var templatePaths = map[string][]string{
	"Pod":                   nil,
	"Deployment":            {"spec", "template"},
	"ReplicaSet":            {"spec", "template"},
	"ReplicationController": {"spec", "template"},
	"StatefulSet":           {"spec", "template"},
	"DaemonSet":             {"spec", "template"},
	"Job":                   {"spec", "template"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template"},
}

// document is one YAML document of the input.
type document struct {
	obj  map[string]any // nil for an empty document
	kind string
	name string
}

var separator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// splitDocuments parses a multi-document YAML stream.
func splitDocuments(y []byte) ([]document, error) {
	var docs []document
	for i, part := range separator.Split(string(y), -1) {
		j, err := yaml.YAMLToJSON([]byte(part))
		if err != nil {
			return nil, fmt.Errorf("YAML document %d: %w", i+1, err)
		}
		j = bytes.TrimSpace(j)
		if len(j) == 0 || string(j) == "null" {
			continue
		}
		var obj map[string]any
		dec := json.NewDecoder(bytes.NewReader(j))
		dec.UseNumber() // keep numbers as written
		if err := dec.Decode(&obj); err != nil {
			return nil, fmt.Errorf("YAML document %d: not an object: %w", i+1, err)
		}
		d := document{obj: obj}
		d.kind, _ = obj["kind"].(string)
		if md, ok := obj["metadata"].(map[string]any); ok {
			d.name, _ = md["name"].(string)
		}
		docs = append(docs, d)
	}
	return docs, nil
}

// template returns the pod template object of a workload (the object itself for a pod), or
// false when the document is not a workload.
func (d document) template() (map[string]any, bool) {
	path, ok := templatePaths[d.kind]
	if !ok {
		return nil, false
	}
	cur := d.obj
	for _, k := range path {
		next, ok := cur[k].(map[string]any)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

// podSpecOf decodes the spec of a pod template.
func podSpecOf(tmpl map[string]any) (*podSpec, error) {
	b, err := json.Marshal(tmpl["spec"])
	if err != nil {
		return nil, err
	}
	var ps podSpec
	if err := json.Unmarshal(b, &ps); err != nil {
		return nil, fmt.Errorf("pod spec: %w", err)
	}
	return &ps, nil
}

// setAnnotation adds key=value to a pod template's metadata.annotations.
func setAnnotation(tmpl map[string]any, key, value string) {
	md, ok := tmpl["metadata"].(map[string]any)
	if !ok {
		md = map[string]any{}
		tmpl["metadata"] = md
	}
	ann, ok := md["annotations"].(map[string]any)
	if !ok {
		ann = map[string]any{}
		md["annotations"] = ann
	}
	ann[key] = value
}

// joinDocuments writes documents back as one YAML stream.
func joinDocuments(docs []document) ([]byte, error) {
	var out bytes.Buffer
	for i, d := range docs {
		y, err := yaml.Marshal(d.obj)
		if err != nil {
			return nil, fmt.Errorf("YAML document %d: %w", i+1, err)
		}
		if i > 0 {
			out.WriteString("---\n")
		}
		out.Write(y)
	}
	return out.Bytes(), nil
}
