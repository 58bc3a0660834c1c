package container

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	// Without it, libcontainer's cgroup managers refuse device rules.
	_ "github.com/opencontainers/cgroups/devices"
)

// CgroupParent is the cgroup below which each container gets its own, /veil/<id>.
const CgroupParent = "/veil"

// invalid returns an InvalidArgument error about the OCI spec.
func invalid(format string, args ...any) error {
	return fmt.Errorf("oci_spec "+format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}

// parseSpec decodes and checks the OCI spec of a CreateContainer request.
func parseSpec(b []byte) (*specs.Spec, error) {
	if len(b) == 0 {
		return nil, invalid("is empty")
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("oci_spec is not valid JSON: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	return checkSpec(&s)
}

// checkSpec checks a decoded OCI spec of a CreateContainer request.
func checkSpec(s *specs.Spec) (*specs.Spec, error) {
	switch {
	case s.Root == nil || s.Root.Path == "":
		return nil, invalid("root.path is missing")
	case s.Process == nil:
		return nil, invalid("process is missing")
	case len(s.Process.Args) == 0 || s.Process.Args[0] == "":
		return nil, invalid("process.args is empty")
	case s.Linux == nil:
		return nil, invalid("linux is missing")
	case s.Hooks != nil:
		// Hooks would run host-chosen programs with the agent's privileges in the guest.
		return nil, invalid("hooks are not supported in the guest")
	}
	if s.Linux.Seccomp != nil && !SeccompSupported {
		return nil, fmt.Errorf("oci_spec linux.seccomp is set, but this agent was built without "+
			"seccomp support (build tag %q): %w", "seccomp", errdefs.ErrFailedPrecondition)
	}
	if _, err := rlimits(s.Process.Rlimits); err != nil {
		return nil, err
	}
	return s, nil
}

// libcontainerConfig turns a checked spec into the libcontainer configuration of container id.
// It runs once the storages are mounted, since the root file system may lie on one of them.
func libcontainerConfig(id string, s *specs.Spec) (*configs.Config, error) {
	if fi, err := os.Stat(s.Root.Path); err != nil || !fi.IsDir() {
		return nil, invalid("root.path %q is not a directory in the guest", s.Root.Path)
	}
	s.Linux.CgroupsPath = CgroupParent + "/" + id
	if err := guestNamespaces(s.Linux); err != nil {
		return nil, err
	}
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:  id,
		NoPivotRoot: rootIsRamfs(),
		Spec:        s,
	})
	if err != nil {
		return nil, fmt.Errorf("oci_spec: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	cfg.Rlimits, _ = rlimits(s.Process.Rlimits)
	return cfg, nil
}

// guestNamespaces drops network namespaces that name a path (the host's pod network
// namespace means the guest's own network, which the agent configures) and checks that every
// other namespace path exists in the guest.
func guestNamespaces(l *specs.Linux) error {
	kept := l.Namespaces[:0]
	for i, ns := range l.Namespaces {
		if ns.Path != "" {
			if ns.Type == specs.NetworkNamespace {
				continue
			}
			if _, err := os.Stat(ns.Path); err != nil {
				return invalid("linux.namespaces[%d].path %q (%s) does not exist in the guest", i, ns.Path, ns.Type)
			}
		}
		kept = append(kept, ns)
	}
	l.Namespaces = kept
	return nil
}

// rootIsRamfs reports whether the agent's root is the initial ramfs, where pivot_root(2)
// fails; libcontainer then moves the root with MS_MOVE and chroot instead.
var rootIsRamfs = sync.OnceValue(func() bool {
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return m.Mountpoint != "/", false
	})
	if err != nil || len(mounts) == 0 {
		return false
	}
	return mounts[len(mounts)-1].FSType == "rootfs"
})

// rlimitTypes maps OCI rlimit names onto resource numbers.
var rlimitTypes = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE,
	"RLIMIT_LOCKS": unix.RLIMIT_LOCKS, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC,
	"RLIMIT_RSS": unix.RLIMIT_RSS, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// rlimits converts the spec's process.rlimits.
func rlimits(in []specs.POSIXRlimit) ([]configs.Rlimit, error) {
	var out []configs.Rlimit
	for i, r := range in {
		t, ok := rlimitTypes[r.Type]
		if !ok {
			return nil, invalid("process.rlimits[%d].type %q is not a known rlimit", i, r.Type)
		}
		if r.Soft > r.Hard {
			return nil, invalid("process.rlimits[%d] (%s): soft limit %d exceeds hard limit %d", i, r.Type, r.Soft, r.Hard)
		}
		out = append(out, configs.Rlimit{Type: t, Soft: r.Soft, Hard: r.Hard})
	}
	return out, nil
}

// initProcess returns the container's init process as the spec describes it.
func initProcess(s *specs.Spec) *libcontainer.Process {
	sp := s.Process
	lp := &libcontainer.Process{
		Args: sp.Args,
		Env:  sp.Env,
		Cwd:  cwdOrRoot(sp.Cwd),
		UID:  int(sp.User.UID),
		GID:  int(sp.User.GID),
		Init: true,
	}
	for _, g := range sp.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	if sp.ConsoleSize != nil {
		lp.ConsoleWidth, lp.ConsoleHeight = uint16(sp.ConsoleSize.Width), uint16(sp.ConsoleSize.Height)
	}
	return lp
}

// cwdOrRoot returns cwd, or "/" when it is empty.
func cwdOrRoot(cwd string) string {
	if cwd == "" {
		return "/"
	}
	return cwd
}
