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

	"github.com/veil-runtime/veil/policy/initdata"
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
	// GuestPull requires every container of the pod (not the sandbox container, whose root
	// file system the shim shares) to run from an image the agent pulled itself
	// (policies.Container.GuestPull), and allows the image_guest_pull storage driver. The
	// runtime must have guest_pull on (docs/config.md).
	GuestPull bool
}

// guestPullDriver is the agent's storage driver of a root file system it pulls itself.
const guestPullDriver = "image_guest_pull"

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
		w, err := workload(ctx, d, tmpl, opts)
		if err != nil {
			return nil, fmt.Errorf("genpolicy: %s %q: %w", d.kind, d.name, err)
		}
		setAnnotation(tmpl, initdata.Annotation, w.Annotation)
		res.Workloads = append(res.Workloads, *w)
	}
	if len(res.Workloads) == 0 {
		return nil, errors.New("genpolicy: no pod or workload with a pod template in the YAML")
	}
	if res.YAML, err = joinDocuments(docs); err != nil {
		return nil, fmt.Errorf("genpolicy: %w", err)
	}
	return res, nil
}

// workload makes the policy and initdata of one pod template.
func workload(ctx context.Context, d document, tmpl map[string]any, opts Options) (*Workload, error) {
	ps, err := podSpecOf(tmpl)
	if err != nil {
		return nil, err
	}
	data, err := podData(ctx, ps, opts)
	if err != nil {
		return nil, err
	}
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

// podData makes the baseline's data for a pod spec.
func podData(ctx context.Context, ps *podSpec, opts Options) (*policies.Data, error) {
	switch {
	case ps.HostNetwork:
		return nil, errors.New("spec.hostNetwork: a confidential pod cannot share the host's network")
	case ps.HostPID:
		return nil, errors.New("spec.hostPID: a confidential pod cannot share the host's processes")
	case ps.HostIPC:
		return nil, errors.New("spec.hostIPC: a confidential pod cannot share the host's IPC")
	case len(ps.Containers) == 0:
		return nil, errors.New("spec.containers: empty")
	}
	s := opts.Settings
	data := &policies.Data{Sandbox: s.Sandbox, Network: s.Network, CopyFile: s.CopyFile}
	data.Sandbox.WithholdOutput = data.Sandbox.WithholdOutput || opts.WithholdOutput
	data.Sandbox.DecisionLog = data.Sandbox.DecisionLog || opts.DecisionLog
	if opts.GuestPull && !slices.Contains(data.Sandbox.StorageDrivers, guestPullDriver) {
		data.Sandbox.StorageDrivers = append(slices.Clone(data.Sandbox.StorageDrivers), guestPullDriver)
	}
	all := append(append([]container{}, ps.InitContainers...), ps.Containers...)
	images := map[string]*Image{} // each reference is resolved once
	for i := range all {
		c := &all[i]
		img, ok := images[c.Image]
		if !ok {
			var err error
			if img, err = opts.Resolver.Resolve(ctx, c.Image); err != nil {
				return nil, fmt.Errorf("container %s: %w", c.Name, err)
			}
			images[c.Image] = img
		}
		entry, err := containerData(c, ps, img, s)
		if err != nil {
			return nil, fmt.Errorf("container %s: %w", c.Name, err)
		}
		entry.GuestPull = opts.GuestPull
		data.Containers = append(data.Containers, *entry)
	}
	if s.SandboxImage != "" {
		entry, err := sandboxData(ctx, s, opts.Resolver)
		if err != nil {
			return nil, err
		}
		data.Containers = append(data.Containers, *entry)
	}
	return data, nil
}
