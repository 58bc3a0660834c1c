package genpolicy

import (
	"errors"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/veil-runtime/veil/policy/policies"
)

// containerData makes the policy entry of one container, and a warning when part of it could
// not be known.
func containerData(c *container, ps *podSpec, img *Image, s *Settings) (*policies.Container, string, error) {
	if c.Name == "" {
		return nil, "", errors.New("name: missing")
	}
	if len(c.EnvFrom) > 0 {
		return nil, "", errors.New("envFrom: not supported (the variables it adds are not known in advance); list them in env")
	}
	env, patterns, vars := environment(c, img, ps, s)
	args := processArgs(c, img, vars)
	if len(args) == 0 {
		return nil, "", errors.New("no command: neither the pod nor the image sets one")
	}
	sec, warning, err := security(c, ps, img, s)
	if err != nil {
		return nil, "", err
	}
	cwd := c.WorkingDir
	if cwd == "" {
		cwd = img.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	return &policies.Container{
		Name: c.Name, Image: c.Image, ImageDigest: img.Digest,
		Args: args, Cwd: cwd, Env: env, EnvPatterns: patterns,
		Mounts:   mounts(c, ps, s),
		Security: *sec,
		Exec:     execCommands(c, vars),
		Stdin:    c.Stdin,
	}, warning, nil
}

// environment returns the variables allowed exactly, the patterns for those whose values
// are not known in advance, and the pod's own variables for $(VAR) expansion. The image's
// variables come first; the pod's replace those of the same name, as containerd does.
func environment(c *container, img *Image, ps *podSpec, s *Settings) (env, patterns []string, vars map[string]string) {
	vars = map[string]string{}
	var names []string
	values := map[string]string{}
	set := func(name, value string) {
		if _, ok := values[name]; !ok {
			names = append(names, name)
		}
		values[name] = value
	}
	for _, e := range img.Env {
		name, value, _ := strings.Cut(e, "=")
		set(name, value)
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			// Set by the host at run time (fieldRef, configMapKeyRef, secretKeyRef, ...).
			patterns = append(patterns, "(?s)^"+regexp.QuoteMeta(e.Name)+"=.*$")
			delete(values, e.Name)
			names = slices.DeleteFunc(names, func(n string) bool { return n == e.Name })
			continue
		}
		v := expand(e.Value, vars)
		vars[e.Name] = v
		set(e.Name, v)
	}
	if c.TTY {
		set("TERM", "xterm")
	}
	for _, n := range names {
		env = append(env, n+"="+values[n])
	}
	patterns = append(patterns, s.EnvPatterns...)
	if ps.EnableServiceLinks == nil || *ps.EnableServiceLinks {
		patterns = append(patterns, s.ServiceLinkEnvPatterns...)
	}
	return env, patterns, vars
}

// processArgs is what Kubernetes runs: command replaces the image's entrypoint (and drops its
// cmd), args replace the cmd.
func processArgs(c *container, img *Image, vars map[string]string) []string {
	var args []string
	switch {
	case len(c.Command) > 0:
		args = append(append(args, c.Command...), c.Args...)
	case len(c.Args) > 0:
		args = append(append(args, img.Entrypoint...), c.Args...)
	default:
		args = append(append(args, img.Entrypoint...), img.Cmd...)
	}
	podSet := len(c.Command) > 0 || len(c.Args) > 0
	for i := range args {
		if podSet {
			args[i] = expand(args[i], vars)
		}
	}
	return args
}

// expand replaces $(VAR) with the pod's variables as the kubelet does: "$$" is a literal
// "$", and a reference to an unknown variable stays as written.
func expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteByte(s[i])
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// mounts lists the runtime's mounts, the service account token, the termination log and the
// container's volume mounts. The last three are bind mounts of files the shim shares from the
// host: volumes (policies.Mount.Volume), which the agent finds among the container's own;
// but an emptyDir volume is the guest's (emptyDirMount).
func mounts(c *container, ps *podSpec, s *Settings) map[string]policies.Mount {
	out := maps.Clone(s.Mounts)
	if out == nil {
		out = map[string]policies.Mount{}
	}
	if s.ServiceAccountPath != "" && (ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken) {
		out[s.ServiceAccountPath] = volume("ro")
	}
	term := c.TerminationMessagePath
	if term == "" {
		term = "/dev/termination-log"
	}
	out[term] = volume()
	for _, vm := range c.VolumeMounts {
		if ed := ps.emptyDir(vm.Name); ed != nil {
			out[vm.MountPath] = emptyDirMount(vm, ed)
		} else if vm.ReadOnly {
			out[vm.MountPath] = volume("ro")
		} else {
			out[vm.MountPath] = volume()
		}
	}
	return out
}

// volume is a bind mount of a file or directory the shim shares from the host, with at least
// options.
func volume(options ...string) policies.Mount {
	return policies.Mount{Type: "bind", Volume: true, Options: options}
}

// execCommands lists the commands of the exec probes and lifecycle hooks, each once.
func execCommands(c *container, vars map[string]string) [][]string {
	var cmds [][]string
	add := func(a *execAction) {
		if a == nil || len(a.Command) == 0 {
			return
		}
		cmd := make([]string, len(a.Command))
		for i, arg := range a.Command {
			cmd[i] = expand(arg, vars)
		}
		if !slices.ContainsFunc(cmds, func(x []string) bool { return slices.Equal(x, cmd) }) {
			cmds = append(cmds, cmd)
		}
	}
	for _, p := range []*probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p != nil {
			add(p.Exec)
		}
	}
	if c.Lifecycle != nil {
		for _, h := range []*handler{c.Lifecycle.PostStart, c.Lifecycle.PreStop} {
			if h != nil {
				add(h.Exec)
			}
		}
	}
	return cmds
}
