// Package genpolicy makes an agent policy from a pod's (or a workload's) YAML: it resolves
// every image to its digest, pins each container's image, command and arguments,
// environment, mounts, security context and the exec commands of its probes and lifecycle
// hooks in the confidential baseline's data section (policies.Data), wraps the policy in an
// initdata document, and adds that document to the pod template as the
// io.katacontainers.config.hypervisor.cc_init_data annotation.
package genpolicy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/veil-runtime/veil/initdata"
	"github.com/veil-runtime/veil/policy/policies"
)

// Options configure Generate.
type Options struct {
	// Resolver finds images; required.
	Resolver Resolver
	// Settings describe what the runtime adds; nil means DefaultSettings().
	Settings *Settings
	// Algorithm is the initdata digest algorithm; "" means sha256 (SNP HOST_DATA's size).
	Algorithm string
	// ExtraData are further initdata entries ("aa.toml", "cdh.toml"); they may not replace
	// policy.rego.
	ExtraData map[string]string
	// WithholdOutput makes the policy withhold the containers' stdout and stderr.
	WithholdOutput bool
	// DecisionLog makes a debugging policy: it lets the host read the agent's decision log.
	DecisionLog bool
	// GuestPull requires every container of the pod to run from an image the agent pulled
	// itself (policies.Container.GuestPull), and allows the image_guest_pull storage driver.
	// The sandbox container then runs the guest image's own pause program
	// (policies.Container.PauseBundle): Settings.SandboxImage is not resolved, only "" still
	// leaves the sandbox out. The runtime must have guest_pull on (docs/config.md).
	GuestPull bool
	// VeilSnapshotter (with GuestPull) says the runtime handler's containerd snapshotter is
	// veil-snapshotter (docs/snapshotter.md): containerd then has none of the image's layers
	// and resolves the containers' users in an empty root file system (no /etc/passwd, no
	// /etc/group), and the policy pins what that gives: a numeric uid's gid is 0, the
	// supplementary groups are the primary gid and the pod's, and a user or group name is
	// refused (containerd would refuse the container).
	VeilSnapshotter bool
}

// Workload is the policy made for one pod template.
type Workload struct {
	Kind, Name string
	Data       policies.Data
	Policy     string // the Rego module: policy.rego of the initdata
	InitData   []byte // the initdata document
	Digest     []byte // its digest with Options.Algorithm
	Annotation string // the value of initdata.Annotation
}

// Result is what Generate makes.
type Result struct {
	Workloads []Workload
	// YAML is the input with the annotation added to every pod template. Documents are
	// written back from their parsed form: key order and comments are not kept.
	YAML []byte
	// Warnings say what genpolicy could not know and what the policy pins instead, one line
	// each, naming the workload and container ("Pod/web: container app: image ...: layer 1
	// is encrypted, ..."). The policy is still made.
	Warnings []string
}

// Generate makes a policy for every workload (Pod, Deployment, StatefulSet, DaemonSet,
// ReplicaSet, ReplicationController, Job, CronJob) in the YAML stream y; other documents
// pass through unchanged.
func Generate(ctx context.Context, y []byte, opts Options) (*Result, error) {
	if opts.Resolver == nil {
		return nil, errors.New("genpolicy: no image resolver")
	}
	if opts.Settings == nil {
		opts.Settings = DefaultSettings()
	}
	if opts.VeilSnapshotter && !opts.GuestPull {
		return nil, errors.New("genpolicy: the veil snapshotter (no image layers on the host) needs guest pull: the host would share empty root file systems")
	}
	if opts.Algorithm == "" {
		opts.Algorithm = "sha256"
	}
	if _, ok := opts.ExtraData[initdata.KeyPolicy]; ok {
		return nil, fmt.Errorf("genpolicy: extra initdata may not replace %s", initdata.KeyPolicy)
	}
	docs, err := splitDocuments(y)
	if err != nil {
		return nil, fmt.Errorf("genpolicy: %w", err)
	}
	res := &Result{}
	for _, d := range docs {
		tmpl, ok := d.template()
		if !ok {
			continue
		}
		w, warnings, err := workload(ctx, d, tmpl, opts)
		if err != nil {
			return nil, fmt.Errorf("genpolicy: %s %q: %w", d.kind, d.name, err)
		}
		setAnnotation(tmpl, initdata.Annotation, w.Annotation)
		res.Workloads = append(res.Workloads, *w)
		for _, m := range warnings {
			res.Warnings = append(res.Warnings, d.kind+"/"+d.name+": "+m)
		}
	}
	if len(res.Workloads) == 0 {
		return nil, errors.New("genpolicy: no pod or workload with a pod template in the YAML")
	}
	if res.YAML, err = joinDocuments(docs); err != nil {
		return nil, fmt.Errorf("genpolicy: %w", err)
	}
	return res, nil
}

// workload makes the policy and initdata of one pod template, and its warnings.
func workload(ctx context.Context, d document, tmpl map[string]any, opts Options) (*Workload, []string, error) {
	ps, err := podSpecOf(tmpl)
	if err != nil {
		return nil, nil, err
	}
	if ps.sealedEnv, err = sealedEnvNames(tmpl); err != nil {
		return nil, nil, err
	}
	if ps.sealedVolumes, err = annotationList(tmpl, SealedVolumesAnnotation); err != nil {
		return nil, nil, err
	}
	data, warnings, err := podData(ctx, ps, opts)
	if err != nil {
		return nil, nil, err
	}
	w, err := wrap(d, data, opts)
	return w, warnings, err
}

// wrap renders the policy of data and wraps it in initdata.
func wrap(d document, data *policies.Data, opts Options) (*Workload, error) {
	pol, err := policies.Render(*data)
	if err != nil {
		return nil, err
	}
	entries := map[string]string{initdata.KeyPolicy: pol}
	for k, v := range opts.ExtraData {
		entries[k] = v
	}
	raw, err := initdata.Marshal(opts.Algorithm, entries)
	if err != nil {
		return nil, err
	}
	digest, err := initdata.Digest(opts.Algorithm, raw)
	if err != nil {
		return nil, err
	}
	ann, err := initdata.EncodeAnnotation(raw)
	if err != nil {
		return nil, err
	}
	return &Workload{Kind: d.kind, Name: d.name, Data: *data, Policy: pol, InitData: raw,
		Digest: digest, Annotation: ann}, nil
}

// podData makes the baseline's data for a pod spec, and the warnings of its containers.
func podData(ctx context.Context, ps *podSpec, opts Options) (*policies.Data, []string, error) {
	switch {
	case ps.HostNetwork:
		return nil, nil, errors.New("spec.hostNetwork: a confidential pod cannot share the host's network")
	case ps.HostPID:
		return nil, nil, errors.New("spec.hostPID: a confidential pod cannot share the host's processes")
	case ps.HostIPC:
		return nil, nil, errors.New("spec.hostIPC: a confidential pod cannot share the host's IPC")
	case len(ps.Containers) == 0:
		return nil, nil, errors.New("spec.containers: empty")
	}
	s := opts.Settings
	data := &policies.Data{Sandbox: s.Sandbox, Network: s.Network, CopyFile: s.CopyFile}
	data.Sandbox.WithholdOutput = data.Sandbox.WithholdOutput || opts.WithholdOutput
	data.Sandbox.DecisionLog = data.Sandbox.DecisionLog || opts.DecisionLog
	var warnings []string
	all := append(append([]container{}, ps.InitContainers...), ps.Containers...)
	if err := checkSealedAnnotation(ps.sealedEnv, all); err != nil {
		return nil, nil, err
	}
	if err := checkSealedVolumes(ps.sealedVolumes, all); err != nil {
		return nil, nil, err
	}
	if err := checkEmptyDirs(ps, all); err != nil {
		return nil, nil, err
	}
	images := map[string]*Image{} // each reference is resolved once
	for i := range all {
		c := &all[i]
		img, ok := images[c.Image]
		if !ok {
			var err error
			if img, err = opts.Resolver.Resolve(ctx, c.Image); err != nil {
				return nil, nil, fmt.Errorf("container %s: %w", c.Name, err)
			}
			images[c.Image] = img
		}
		cimg := img
		if opts.VeilSnapshotter {
			cimg = emptyHostRoot(img)
		}
		entry, warning, err := containerData(c, ps, cimg, s)
		if err != nil {
			return nil, nil, fmt.Errorf("container %s: %w", c.Name, err)
		}
		if warning != "" {
			warnings = append(warnings, "container "+c.Name+": "+warning)
		}
		if err := sealEnv(entry, c, ps.sealedEnv); err != nil {
			return nil, nil, fmt.Errorf("container %s: %w", c.Name, err)
		}
		sealMounts(entry, c, ps.sealedVolumes)
		entry.GuestPull = opts.GuestPull
		data.Containers = append(data.Containers, *entry)
		data.Network.ForwardPorts = appendPorts(data.Network.ForwardPorts, c.Ports)
	}
	if s.SandboxImage != "" {
		entry, warning, err := sandbox(ctx, ps, opts)
		if err != nil {
			return nil, nil, err
		}
		if warning != "" {
			warnings = append(warnings, "sandbox: "+warning)
		}
		data.Containers = append(data.Containers, *entry)
	}
	return data, warnings, nil
}

// appendPorts adds the TCP ports among ports (containerPort; TCP when the protocol is not
// set) to have, each once, in order: the ports port forwarding may reach.
func appendPorts(have []int, ports []containerPort) []int {
	for _, p := range ports {
		if p.Protocol != "" && !strings.EqualFold(p.Protocol, "TCP") {
			continue
		}
		if p.ContainerPort > 0 && p.ContainerPort <= 65535 && !slices.Contains(have, p.ContainerPort) {
			have = append(have, p.ContainerPort)
		}
	}
	return have
}

// sandbox makes the entry of the pod's sandbox container for the mode opts ask for.
func sandbox(ctx context.Context, ps *podSpec, opts Options) (*policies.Container, string, error) {
	if opts.GuestPull {
		e, err := guestPullSandboxData(ps, opts.Settings)
		return e, "", err
	}
	return sandboxData(ctx, ps, opts.Settings, opts.Resolver)
}
