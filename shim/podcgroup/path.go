// Package podcgroup puts a Veil pod's host footprint (the shim, QEMU and virtiofsd) into the
// pod's sandbox cgroup, as runc would put the pause container and as Kata's
// sandbox_cgroup_only does: the cgroup named by the sandbox container's OCI
// linux.cgroupsPath (which containerd's CRI derives from the kubelet's pod cgroup, and ctr
// sets to /<namespace>/<id>), or, for a container without one (ctr run --cgroup ""), a
// cgroup veil-<vm id> below the shim's own. The shim joins
// it before it starts QEMU and virtiofsd, so they and all their threads are born in it and
// every page they touch is charged to the pod. The cgroup is recorded in the pod directory so
// that whoever cleans up the pod (the shim, or `containerd-shim-veil-v2 delete` after a shim
// died) removes it; the kubelet's pod cgroup above it is never removed.
//
// Both cgroup v1 (every mounted hierarchy, as on hosts in legacy or hybrid mode) and v2 are
// handled through containerd's github.com/containerd/cgroups/v3. cgroupsPath comes in the
// cgroupfs driver's form ("/kubepods/besteffort/pod<uid>/<id>") or the systemd driver's
// ("kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>"); the systemd form is expanded
// to its cgroupfs path (runc's rules) and the scope's directory is made directly, without
// asking systemd over D-Bus for a transient unit.
package podcgroup

import (
	"fmt"
	"strings"
)

// ResolvePath turns an OCI linux.cgroupsPath into the cgroup's path relative to each
// hierarchy's root (always absolute, e.g. "/kubepods/pod1/abc"). It refuses relative paths,
// "." and ".." components and malformed systemd names, so that nothing is ever made outside
// the cgroup file system's mounts.
func ResolvePath(cgroupsPath string) (string, error) {
	if cgroupsPath == "" {
		return "", fmt.Errorf("empty cgroupsPath")
	}
	if !strings.HasPrefix(cgroupsPath, "/") && strings.Count(cgroupsPath, ":") == 2 {
		return systemdPath(cgroupsPath)
	}
	return cgroupfsPath(cgroupsPath)
}

// cgroupfsPath checks a cgroupfs driver path: absolute, below the root, no empty, "." or
// ".." component.
func cgroupfsPath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("cgroupsPath %q: not an absolute path (cgroupfs form /parent/.../name) nor the systemd form slice:prefix:name", p)
	}
	trimmed := strings.TrimSuffix(p[1:], "/")
	if trimmed == "" {
		return "", fmt.Errorf("cgroupsPath %q: the root cgroup cannot be a pod's", p)
	}
	for _, c := range strings.Split(trimmed, "/") {
		if err := checkComponent(c); err != nil {
			return "", fmt.Errorf("cgroupsPath %q: %w", p, err)
		}
	}
	return "/" + trimmed, nil
}

func checkComponent(c string) error {
	switch c {
	case "":
		return fmt.Errorf("empty path component")
	case ".", "..":
		return fmt.Errorf("path component %q is not allowed", c)
	}
	if strings.ContainsRune(c, 0) {
		return fmt.Errorf("path component %q holds a NUL byte", c)
	}
	return nil
}

// systemdPath expands the systemd driver's "slice:prefix:name" as runc does: the slice
// "a-b-c.slice" lives at /a.slice/a-b.slice/a-b-c.slice (an empty slice is system.slice,
// "-.slice" the root), and the unit is "<prefix>-<name>.scope", or name itself when it is a
// slice.
func systemdPath(p string) (string, error) {
	parts := strings.Split(p, ":")
	slice, prefix, name := parts[0], parts[1], parts[2]
	if slice == "" {
		slice = "system.slice"
	}
	dir, err := ExpandSlice(slice)
	if err != nil {
		return "", fmt.Errorf("cgroupsPath %q: %w", p, err)
	}
	if name == "" {
		return "", fmt.Errorf("cgroupsPath %q: systemd form slice:prefix:name with an empty name", p)
	}
	unit := name
	if !strings.HasSuffix(name, ".slice") {
		unit = prefix + "-" + name + ".scope" // runc's getUnitName, even for an empty prefix
	}
	if strings.Contains(unit, "/") {
		return "", fmt.Errorf("cgroupsPath %q: unit name %q contains a /", p, unit)
	}
	if err := checkComponent(unit); err != nil {
		return "", fmt.Errorf("cgroupsPath %q: %w", p, err)
	}
	return strings.TrimSuffix(dir, "/") + "/" + unit, nil
}

// ExpandSlice returns the cgroup path of a systemd slice (runc's libcontainer
// cgroups/systemd ExpandSlice): "kubepods-besteffort-pod1.slice" is
// "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice".
func ExpandSlice(slice string) (string, error) {
	const suffix = ".slice"
	if len(slice) <= len(suffix) || !strings.HasSuffix(slice, suffix) {
		return "", fmt.Errorf("invalid slice name %q: it must end in .slice", slice)
	}
	if strings.Contains(slice, "/") {
		return "", fmt.Errorf("invalid slice name %q: it contains a /", slice)
	}
	name := strings.TrimSuffix(slice, suffix)
	if name == "-" {
		return "/", nil
	}
	var path, prefix string
	for _, c := range strings.Split(name, "-") {
		if c == "" {
			return "", fmt.Errorf("invalid slice name %q: empty component between dashes", slice)
		}
		path += "/" + prefix + c + suffix
		prefix += c + "-"
	}
	return path, nil
}
