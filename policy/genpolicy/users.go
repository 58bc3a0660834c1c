package genpolicy

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/user"
)

// The user resolution below follows what the kubelet and containerd 2.4's CRI do, step by
// step, so that the policy pins the uid, gid and supplementary groups the spec will carry:
//
//   - the kubelet (kuberuntime determineEffectiveSecurityContext, getImageUser) passes
//     runAsUser (the container's, else the pod's) or, without it, the image's user: its part
//     before ":" as a uid when numeric, else as a user name (the CRI's getUserFromImage,
//     internal/cri/server/images/image_status.go); no user at all is uid 0. The image's
//     group is never used. It passes fsGroup and supplementalGroups as the supplemental
//     groups, and supplementalGroupsPolicy;
//   - containerd's CRI (internal/cri/server/container_create.go platformSpecOpts,
//     internal/cri/util GenerateUserString) appends ":runAsGroup" and calls pkg/oci WithUser,
//     which resolves a name (WithUsername: an error when /etc/passwd lacks it), or a uid alone
//     (WithUserID: the gid of its /etc/passwd entry, 0 when there is none), in the container's
//     root file system, then sets additionalGids to the primary gid (ensureAdditionalGids);
//   - with supplementalGroupsPolicy Merge (the default), containerSpecOpts
//     (container_create_linux.go) then calls the CRI's WithAdditionalGIDs, which wraps
//     pkg/oci WithAdditionalGIDs: the groups of /etc/group whose member list names the user,
//     except one of the user's own name; then WithSupplementalGroups adds the pod's groups.
//     With Strict, /etc/group is not read. internal/cri/opts mergeGids sorts the list.
//   - the sandbox (internal/cri/server/podsandbox sandbox_run_linux.go): sandboxContainerSpec
//     adds the pod's groups, then sandboxContainerSpecOpts calls WithUser with the pod's
//     runAsUser[:runAsGroup] or the pause image's user, which resets them to the primary gid.
//
// Files are parsed with github.com/moby/sys/user, as containerd parses them.

// imageFiles are the image's user database, or why it is not known.
type imageFiles struct {
	passwd, group []byte
	unknown       string // "" when passwd and group are what the image has
	emptyRoot     bool   // containerd's root file system is empty (veil-snapshotter)
}

func filesOf(img *Image) *imageFiles {
	if img.emptyRoot {
		return &imageFiles{emptyRoot: true}
	}
	return &imageFiles{passwd: img.Passwd, group: img.Group, unknown: img.UserFilesUnknown}
}

// emptyHostRoot is img as containerd sees it under veil-snapshotter: every layer is a remote
// snapshot, so the root file system containerd's CRI mounts to look users up (pkg/oci
// WithUser, WithAdditionalGIDs) is empty. oci.UserFromFS then finds no /etc/passwd: a uid
// alone gets gid 0 (WithUserID), a name is an error (WithUsername, GIDFromFS), and
// WithAdditionalGIDs finds no groups (fs.ErrNotExist is ignored), leaving the primary gid
// (ensureAdditionalGids) and the pod's groups.
func emptyHostRoot(img *Image) *Image {
	c := *img
	c.Passwd, c.Group, c.UserFilesUnknown, c.emptyRoot = nil, nil, "", true
	return &c
}

// emptyRootNote ends the errors of a name containerd cannot resolve in an empty root.
const emptyRootNote = "; under veil-snapshotter containerd looks users up in an empty root file system (the image's layers stay off the host) and refuses the container: give it a numeric runAsUser (and runAsGroup)"

// errUnknown is returned by the lookups when the files could not be read.
var errUnknown = errors.New("the image's /etc/passwd and /etc/group are unknown")

// lookupUser returns the first /etc/passwd entry that match accepts (oci.UserFromFS); ok is
// false when there is none or no /etc/passwd.
func (f *imageFiles) lookupUser(match func(user.User) bool) (u user.User, ok bool, err error) {
	if f.unknown != "" {
		return u, false, errUnknown
	}
	if f.passwd == nil {
		return u, false, nil
	}
	users, err := user.ParsePasswdFilter(bytes.NewReader(f.passwd), match)
	if err != nil {
		return u, false, fmt.Errorf("/etc/passwd: %w", err)
	}
	if len(users) == 0 {
		return u, false, nil
	}
	return users[0], true, nil
}

// groups returns the /etc/group entries that match accepts.
func (f *imageFiles) groups(match func(user.Group) bool) ([]user.Group, error) {
	if f.unknown != "" {
		return nil, errUnknown
	}
	if f.group == nil {
		return nil, nil
	}
	gs, err := user.ParseGroupFilter(bytes.NewReader(f.group), match)
	if err != nil {
		return nil, fmt.Errorf("/etc/group: %w", err)
	}
	return gs, nil
}

// ociUser resolves userstr ("uid", "name", "uid:gid", "name:group", ...) as oci.WithUser
// does. uid or gid is nil when it depends on files that could not be read. A name the image
// does not have is an error, as it is for containerd; a uid it does not have gets gid 0.
func ociUser(userstr string, f *imageFiles) (uid, gid *int64, err error) {
	parts := strings.Split(userstr, ":")
	switch len(parts) {
	case 1:
		n, isNum, err := userID(parts[0], "uid", userstr)
		if err != nil {
			return nil, nil, err
		}
		if !isNum {
			u, err := userByName(parts[0], f)
			if err != nil {
				if errors.Is(err, errUnknown) {
					err = nil
				}
				return nil, nil, err
			}
			return ptr(int64(u.Uid)), ptr(int64(u.Gid)), nil
		}
		// oci.WithUserID: the gid of the uid's entry, 0 when it has none.
		u, ok, err := f.lookupUser(func(u user.User) bool { return u.Uid == int(n) })
		switch {
		case errors.Is(err, errUnknown):
			return ptr(n), nil, nil
		case err != nil:
			return nil, nil, err
		case !ok:
			return ptr(n), ptr(int64(0)), nil
		}
		return ptr(n), ptr(int64(u.Gid)), nil
	case 2:
		return userAndGroup(parts[0], parts[1], userstr, f)
	}
	return nil, nil, fmt.Errorf("invalid USER value %s", userstr)
}

// userAndGroup is oci.WithUser's "user:group" case.
func userAndGroup(us, gs, userstr string, f *imageFiles) (uid, gid *int64, err error) {
	n, uidNum, err := userID(us, "uid", userstr)
	if err != nil {
		return nil, nil, err
	}
	g, gidNum, err := userID(gs, "gid", userstr)
	if err != nil {
		return nil, nil, err
	}
	if uidNum {
		uid = ptr(n)
	} else {
		u, err := userByName(us, f)
		if err != nil && !errors.Is(err, errUnknown) {
			return nil, nil, err
		} else if err == nil {
			uid = ptr(int64(u.Uid))
		}
	}
	if gidNum {
		return uid, ptr(g), nil
	}
	groups, err := f.groups(func(g user.Group) bool { return g.Name == gs })
	switch {
	case errors.Is(err, errUnknown):
		return uid, nil, nil
	case err != nil:
		return nil, nil, err
	case len(groups) == 0 && f.emptyRoot:
		return nil, nil, fmt.Errorf("group %q%s", gs, emptyRootNote)
	case len(groups) == 0:
		return nil, nil, fmt.Errorf("group %q is not in the image's /etc/group (containerd refuses the container)", gs)
	}
	return uid, ptr(int64(groups[0].Gid)), nil
}

// userID parses a numeric uid or gid as oci.WithUser does (0 to MaxInt32); isNum is false
// for a name.
func userID(s, what, userstr string) (n int64, isNum bool, err error) {
	v, err := strconv.Atoi(s)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, false, fmt.Errorf("invalid USER value %q: %s out of range", userstr, what)
		}
		return 0, false, nil
	}
	if v < 0 || v > math.MaxInt32 {
		return 0, false, fmt.Errorf("invalid USER value %q: %s out of range", userstr, what)
	}
	return int64(v), true, nil
}

// userByName is oci.WithUsername's lookup: a name the image does not have is an error.
func userByName(name string, f *imageFiles) (user.User, error) {
	u, ok, err := f.lookupUser(func(u user.User) bool { return u.Name == name })
	if err != nil {
		return u, err
	}
	if !ok && f.emptyRoot {
		return u, fmt.Errorf("user %q%s", name, emptyRootNote)
	}
	if !ok {
		return u, fmt.Errorf("user %q is not in the image's /etc/passwd (containerd refuses the container)", name)
	}
	return u, nil
}

// memberGroups are the gids oci.WithAdditionalGIDs(userstr) finds: the groups of /etc/group
// that list the user's name as a member, except a group of the user's own name. A uid that
// /etc/passwd does not know has none.
func memberGroups(userstr string, f *imageFiles) ([]int64, error) {
	name := userstr
	if n, err := strconv.Atoi(userstr); err == nil {
		u, ok, err := f.lookupUser(func(u user.User) bool { return u.Uid == n })
		if err != nil || !ok {
			return nil, err
		}
		name = u.Name
	}
	groups, err := f.groups(func(g user.Group) bool { return g.Name != name && slices.Contains(g.List, name) })
	if err != nil {
		return nil, err
	}
	var gids []int64
	for _, g := range groups {
		gids = append(gids, int64(g.Gid))
	}
	return gids, nil
}

// gidSet is a sorted list of distinct gids, as containerd's mergeGids makes it.
func gidSet(lists ...[]int64) []int64 {
	var out []int64
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func ptr[T any](v T) *T { return &v }
