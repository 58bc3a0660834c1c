package genpolicy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/veil-runtime/veil/policy/policies"
)

// security makes the container's security entry, and a warning when something of it could
// not be known (an encrypted image's users). A privileged container is refused: the baseline
// exists to keep the host out, and a privileged container hands it the guest.
func security(c *container, ps *podSpec, img *Image, s *Settings) (*policies.Security, string, error) {
	sc, psc := containerSC(c), podSC(ps)
	if isTrue(sc.Privileged) {
		return nil, "", errors.New("securityContext.privileged: a confidential pod cannot run privileged containers")
	}
	caps, err := capabilitySet(s.Capabilities, sc.Capabilities)
	if err != nil {
		return nil, "", err
	}
	seccomp, err := seccompRequired(sc.SeccompProfile, psc.SeccompProfile)
	if err != nil {
		return nil, "", err
	}
	id, err := containerIdentity(c, ps, img)
	if err != nil {
		return nil, "", err
	}
	sec := &policies.Security{
		Capabilities: caps,
		// The kubelet asks for no_new_privs only when allowPrivilegeEscalation is false
		// (securitycontext.AddNoNewPrivileges); containerd's CRI otherwise clears it
		// (oci.WithNewPrivileges in buildLinuxSpec), whatever privileged says.
		NoNewPrivileges: sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation,
		UID:             id.uid,
		GID:             id.gid,
		AdditionalGids:  id.additional,
		Rlimits:         slices.Clone(s.Rlimits),
		SeccompRequired: seccomp,
		NonRoot:         isTrue(firstBool(sc.RunAsNonRoot, psc.RunAsNonRoot)),
		ReadOnlyRoot:    isTrue(sc.ReadOnlyRootFilesystem),
		MaskedPaths:     slices.Clone(s.MaskedPaths),
		ReadonlyPaths:   slices.Clone(s.ReadonlyPaths),
		Sysctls:         podSysctls(psc),
	}
	// A pod's containers join the sandbox's IPC and UTS namespaces, and its PID namespace
	// with shareProcessNamespace, as containerd's CRI does for the kubelet.
	sec.SharedNamespaces = []string{"ipc", "uts"}
	if isTrue(ps.ShareProcessNamespace) {
		sec.SharedNamespaces = append(sec.SharedNamespaces, "pid")
	}
	return sec, id.warning, nil
}

// identity is the user a process runs as, as far as it is known: uid or gid nil when it is
// not (then not pinned), additional the supplementary groups it may hold.
type identity struct {
	uid, gid   *int64
	additional []int64
	warning    string
}

// containerIdentity is the user containerd's CRI gives a pod's container (users.go has the
// steps). An exec runs with the same user.
func containerIdentity(c *container, ps *podSpec, img *Image) (*identity, error) {
	sc, psc := containerSC(c), podSC(ps)
	strict, err := strictGroups(psc)
	if err != nil {
		return nil, err
	}
	userstr := kubeletImageUser(img.User) // the CRI's runAsUser or runAsUsername
	if u := firstInt(sc.RunAsUser, psc.RunAsUser); u != nil {
		userstr = strconv.FormatInt(*u, 10)
	}
	full := userstr
	if g := firstInt(sc.RunAsGroup, psc.RunAsGroup); g != nil {
		full += ":" + strconv.FormatInt(*g, 10)
	}
	f := filesOf(img)
	uid, gid, err := ociUser(full, f)
	if err != nil {
		return nil, fmt.Errorf("user %s: %w", full, err)
	}
	var member []int64
	if !strict {
		if member, err = memberGroups(userstr, f); err != nil && !errors.Is(err, errUnknown) {
			return nil, fmt.Errorf("supplementary groups of user %s: %w", userstr, err)
		}
	}
	id := &identity{uid: uid, gid: gid, additional: gidSet(optional(gid), member, podGroups(psc))}
	if f.unknown != "" && (uid == nil || gid == nil || !strict) {
		id.warning = unknownUserWarning(c.Image, f.unknown, id)
	}
	return id, nil
}

// sandboxIdentity is the user of the pod's sandbox (pause) container as containerd's CRI
// sets it (podsandbox sandboxContainerSpecOpts): the pod's runAsUser[:runAsGroup], else the
// pause image's user. oci.WithUser then resets the supplementary groups to the primary gid,
// dropping the pod's (sandboxContainerSpec added them before it); without any user the
// process is root with the pod's groups.
func sandboxIdentity(ps *podSpec, ref string, img *Image) (*identity, error) {
	psc := podSC(ps)
	userstr, err := sandboxUser(psc)
	if err != nil {
		return nil, err
	}
	if userstr == "" {
		userstr = img.User
	}
	if userstr == "" {
		return &identity{uid: ptr(int64(0)), gid: ptr(int64(0)), additional: gidSet(podGroups(psc))}, nil
	}
	f := filesOf(img)
	uid, gid, err := ociUser(userstr, f)
	if err != nil {
		return nil, fmt.Errorf("user %s: %w", userstr, err)
	}
	id := &identity{uid: uid, gid: gid, additional: gidSet(optional(gid))}
	if uid == nil || gid == nil {
		id.warning = unknownUserWarning(ref, f.unknown, id)
	}
	return id, nil
}

// sandboxUser is util.GenerateUserString for the sandbox: the pod's runAsUser, with
// ":runAsGroup" when set. A group without a user is refused by containerd's CRI (and by the
// CRI API: run_as_group only with run_as_user), for the sandbox and so for the whole pod.
func sandboxUser(psc *podSecurityContext) (string, error) {
	if psc.RunAsUser == nil {
		if psc.RunAsGroup != nil {
			return "", errors.New("spec.securityContext.runAsGroup without runAsUser: containerd refuses to create the pod sandbox (user group is specified without user); set runAsUser too, or set runAsGroup on the containers")
		}
		return "", nil
	}
	s := strconv.FormatInt(*psc.RunAsUser, 10)
	if psc.RunAsGroup != nil {
		s += ":" + strconv.FormatInt(*psc.RunAsGroup, 10)
	}
	return s, nil
}

// kubeletImageUser is the user the kubelet passes to the CRI for an image whose config says
// user (getImageUser and the CRI's getUserFromImage): the part before ":" as a uid when
// numeric, else as a user name; the group is dropped, and no user is uid 0.
func kubeletImageUser(user string) string {
	u, _, _ := strings.Cut(user, ":")
	if n, err := strconv.ParseInt(u, 10, 64); err == nil {
		return strconv.FormatInt(n, 10)
	}
	if u == "" {
		return "0"
	}
	return u
}

// strictGroups reads supplementalGroupsPolicy: Strict leaves the image's /etc/group out.
func strictGroups(psc *podSecurityContext) (bool, error) {
	switch psc.SupplementalGroupsPolicy {
	case "", "Merge":
		return false, nil
	case "Strict":
		return true, nil
	}
	return false, fmt.Errorf("spec.securityContext.supplementalGroupsPolicy: %q is not Merge or Strict", psc.SupplementalGroupsPolicy)
}

// podGroups are the supplementary groups the kubelet passes for the pod: fsGroup and
// supplementalGroups. (Groups it adds for volumes, pv.beta.kubernetes.io/gid, are not in
// the pod and not known here.)
func podGroups(psc *podSecurityContext) []int64 {
	return append(optional(psc.FSGroup), psc.SupplementalGroups...)
}

// unknownUserWarning says what the policy pins of a user that image ref's files would tell.
func unknownUserWarning(ref, why string, id *identity) string {
	show := func(p *int64) string {
		if p == nil {
			return "not pinned"
		}
		return strconv.FormatInt(*p, 10)
	}
	return fmt.Sprintf("image %s: %s, so its /etc/passwd and /etc/group cannot be read: the policy pins uid %s, gid %s "+
		"and supplementary groups %v from the pod alone, and refuses a group that the image's /etc/group would add; "+
		"set runAsUser, runAsGroup and supplementalGroupsPolicy: Strict to pin the user without the image",
		ref, why, show(id.uid), show(id.gid), id.additional)
}

// seccompRequired says whether the container asked for a seccomp profile that denies by
// default: its seccompProfile, else the pod's, of type RuntimeDefault or Localhost.
func seccompRequired(container, pod *seccompProfile) (bool, error) {
	p := container
	if p == nil {
		p = pod
	}
	if p == nil {
		return false, nil
	}
	switch p.Type {
	case "RuntimeDefault", "Localhost":
		return true, nil
	case "Unconfined":
		return false, nil
	}
	return false, fmt.Errorf("securityContext.seccompProfile.type: %q is not RuntimeDefault, Localhost or Unconfined", p.Type)
}

func podSysctls(psc *podSecurityContext) []string {
	var out []string
	for _, sy := range psc.Sysctls {
		out = append(out, sy.Name)
	}
	return out
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

func containerSC(c *container) *securityContext {
	if c.SecurityContext == nil {
		return &securityContext{}
	}
	return c.SecurityContext
}

func podSC(ps *podSpec) *podSecurityContext {
	if ps.SecurityContext == nil {
		return &podSecurityContext{}
	}
	return ps.SecurityContext
}

func optional(p *int64) []int64 {
	if p == nil {
		return nil
	}
	return []int64{*p}
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
