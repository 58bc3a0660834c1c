package genpolicy

import (
	"errors"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/veil-runtime/veil/policy/policies"
)

// containerData makes the policy entry of one container.
func containerData(c *container, ps *podSpec, img *Image, s *Settings) (*policies.Container, error) {
	if c.Name == "" {
		return nil, errors.New("name: missing")
	}
	if len(c.EnvFrom) > 0 {
		return nil, errors.New("envFrom: not supported (the variables it adds are not known in advance); list them in env")
	}
	env, patterns, vars := environment(c, img, ps, s)
	args := processArgs(c, img, vars)
	if len(args) == 0 {
		return nil, errors.New("no command: neither the pod nor the image sets one")
	}
	sec, err := security(c, ps, img, s)
	if err != nil {
		return nil, err
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
	}, nil
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
// container's volume mounts.
func mounts(c *container, ps *podSpec, s *Settings) map[string]policies.Mount {
	out := maps.Clone(s.Mounts)
	if out == nil {
		out = map[string]policies.Mount{}
	}
	if s.ServiceAccountPath != "" && (ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken) {
		out[s.ServiceAccountPath] = policies.Mount{Type: "bind", Source: s.VolumeSource, Options: []string{"ro"}}
	}
	term := c.TerminationMessagePath
	if term == "" {
		term = "/dev/termination-log"
	}
	out[term] = policies.Mount{Type: "bind", Source: s.VolumeSource}
	for _, vm := range c.VolumeMounts {
		m := policies.Mount{Type: "bind", Source: s.VolumeSource}
		if vm.ReadOnly {
			m.Options = []string{"ro"}
		}
		out[vm.MountPath] = m
	}
	return out
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

// security makes the container's security entry. A privileged container is refused: the
// baseline exists to keep the host out, and a privileged container hands it the guest.
func security(c *container, ps *podSpec, img *Image, s *Settings) (*policies.Security, error) {
	sc := c.SecurityContext
	if sc == nil {
		sc = &securityContext{}
	}
	if sc.Privileged != nil && *sc.Privileged {
		return nil, errors.New("securityContext.privileged: a confidential pod cannot run privileged containers")
	}
	psc := ps.SecurityContext
	if psc == nil {
		psc = &podSecurityContext{}
	}
	caps, err := capabilitySet(s.Capabilities, sc.Capabilities)
	if err != nil {
		return nil, err
	}
	sec := &policies.Security{
		Capabilities:    caps,
		NoNewPrivileges: sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation,
		NonRoot:         isTrue(firstBool(sc.RunAsNonRoot, psc.RunAsNonRoot)),
		ReadOnlyRoot:    isTrue(sc.ReadOnlyRootFilesystem),
		MaskedPaths:     slices.Clone(s.MaskedPaths),
		ReadonlyPaths:   slices.Clone(s.ReadonlyPaths),
	}
	imgUID, imgGID := imageUser(img.User)
	sec.UID = firstInt(sc.RunAsUser, psc.RunAsUser, imgUID)
	sec.GID = firstInt(sc.RunAsGroup, psc.RunAsGroup, imgGID)
	// A pod's containers join the sandbox's IPC and UTS namespaces, and its PID namespace
	// with shareProcessNamespace, as containerd's CRI does for the kubelet.
	sec.SharedNamespaces = []string{"ipc", "uts"}
	if isTrue(ps.ShareProcessNamespace) {
		sec.SharedNamespaces = append(sec.SharedNamespaces, "pid")
	}
	for _, sy := range psc.Sysctls {
		sec.Sysctls = append(sec.Sysctls, sy.Name)
	}
	return sec, nil
}

// capabilitySet applies a securityContext's drop and add to the runtime's default set.
func capabilitySet(defaults []string, c *capabilities) ([]string, error) {
	set := slices.Clone(defaults)
	if c != nil {
		for _, d := range c.Drop {
			if strings.EqualFold(d, "ALL") {
				set = nil
				break
			}
			set = slices.DeleteFunc(set, func(x string) bool { return x == capName(d) })
		}
		for _, a := range c.Add {
			if strings.EqualFold(a, "ALL") {
				return nil, errors.New("securityContext.capabilities.add: ALL is privileged; list the capabilities needed")
			}
			if n := capName(a); !slices.Contains(set, n) {
				set = append(set, n)
			}
		}
	}
	slices.Sort(set)
	return set, nil
}

// capName turns "net_admin" or "NET_ADMIN" into "CAP_NET_ADMIN".
func capName(s string) string {
	s = strings.ToUpper(s)
	if !strings.HasPrefix(s, "CAP_") {
		s = "CAP_" + s
	}
	return s
}

// imageUser reads the numeric uid and gid of an image's User ("1000", "1000:1000"). An empty
// User runs as root. A name, or a uid without a group (whose group comes from the image's
// /etc/passwd), cannot be resolved here and stays unpinned.
func imageUser(user string) (uid, gid *int64) {
	if user == "" {
		zero, zero2 := int64(0), int64(0)
		return &zero, &zero2
	}
	u, g, hasGroup := strings.Cut(user, ":")
	if n, err := strconv.ParseInt(u, 10, 64); err == nil {
		uid = &n
	}
	if n, err := strconv.ParseInt(g, 10, 64); hasGroup && err == nil {
		gid = &n
	}
	return uid, gid
}

func firstBool(bs ...*bool) *bool {
	for _, b := range bs {
		if b != nil {
			return b
		}
	}
	return nil
}

func firstInt(ns ...*int64) *int64 {
	for _, n := range ns {
		if n != nil {
			v := *n
			return &v
		}
	}
	return nil
}

func isTrue(b *bool) bool { return b != nil && *b }
