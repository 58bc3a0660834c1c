//go:build e2e

package e2e

// Path attacks of a hostile host: links it makes in the share, storages that alias guest
// paths, roots and CopyFile targets it chooses. Each runs twice: under veil-genpolicy's policy
// and under allow-all, where only the agent's own checks stand in the way.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/agent/api"
)

type hostileAttack struct {
	name string
	run  func(t *testing.T, e *hostileEnv)
}

// TestHostilePaths runs every path attack in one VM per policy.
func TestHostilePaths(t *testing.T) {
	for _, p := range []hostilePolicy{polGenerated, polAllowAll} {
		t.Run(string(p), func(t *testing.T) {
			e := newHostileEnv(t, p)
			for _, a := range append(append(pathAttacks(), extraAttacks()...), lastAttacks()...) {
				t.Run(a.name, func(t *testing.T) { a.run(t, e) })
			}
		})
	}
}

func pathAttacks() []hostileAttack {
	return []hostileAttack{
		// 1. A volume's source in the share is a link the host made.
		{"volume_link_to_root", linkedVolume("/data", "/")},
		{"volume_link_to_image_cache", linkedVolume("/data", api.ImagesDir)},
		{"volume_link_to_containers", linkedVolume("/data", api.ContainersDir)},
		{"volume_link_relative", linkedVolume("/data", "../../..")},
		{"volume_link_intermediate", intermediateLink},
		{"file_volume_link_to_guest_file", fileVolumeLink},
		// 2. Bind storages that alias guest paths.
		{"bind_storage_linked_source", linkedBindStorage(api.ImagesDir)},
		{"bind_storage_linked_to_proc_self_root", linkedBindStorage("/proc/self/root" + api.ImagesDir)},
		{"bind_storage_aliases_pulled_root", aliasPulledRoot},
		// 3. A guest-pull root where the host writes.
		{"guest_pull_root_in_share", pullRootInShare},
		// 4. CopyFile where the host may not write.
		{"copy_file_into_pulled_root", copyIntoPulledRoot},
		{"copy_file_into_image_cache", copyIntoImageCache},
		{"copy_file_across_mount", copyAcrossMount},
	}
}

// lastAttacks run after every other: they may leave the VM compromised.
func lastAttacks() []hostileAttack {
	return []hostileAttack{
		{"copy_file_into_image_cache_through_linked_bind", poisonCacheThroughLink},
	}
}

// linkedVolume makes the source of app's volume at dest (its directory in the share) a link
// to target.
func linkedVolume(dest, target string) func(t *testing.T, e *hostileEnv) {
	return func(t *testing.T, e *hostileEnv) {
		id := e.newID("vol")
		e.cleanShare(t, id)
		r := e.honest(t, id, hostileApp)
		src := e.hostPath(api.SharedVolume(id, r.binds[dest]))
		if err := os.Remove(src); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, src); err != nil {
			t.Fatal(err)
		}
		e.attackCreate(t, "app with "+dest+"'s source linked to "+target, r, nil, "GUEST-ROOT-VISIBLE")
	}
}

// intermediateLink makes <share>/<id> a link to another directory of the share that holds
// the container's sources (its /data with a file in it): the agent must not follow a link
// anywhere in a source's path.
func intermediateLink(t *testing.T, e *hostileEnv) {
	id := e.newID("vol")
	elsewhere := id + "-elsewhere"
	e.cleanShare(t, id, elsewhere)
	r := e.honest(t, id, hostileApp)
	if err := os.Rename(filepath.Join(e.share, id), filepath.Join(e.share, elsewhere)); err != nil {
		t.Fatal(err)
	}
	data := e.hostPath(strings.Replace(api.SharedVolume(id, r.binds["/data"]), id, elsewhere, 1))
	if err := os.WriteFile(filepath.Join(data, "elsewhere-marker"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(api.SharedDir+"/"+elsewhere, filepath.Join(e.share, id)); err != nil {
		t.Fatal(err)
	}
	e.attackCreate(t, "app with <share>/"+id+" a link", r, nil)
}

// fileVolumeLink makes /etc/hostname's source a link to a file only the guest has; app's
// declared probe (cat /etc/hostname) would then show it to the host.
func fileVolumeLink(t *testing.T, e *hostileEnv) {
	id := e.newID("vol")
	e.cleanShare(t, id)
	r := e.honest(t, id, hostileApp)
	src := e.hostPath(api.SharedVolume(id, r.binds["/etc/hostname"]))
	if err := os.Remove(src); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/veil/image.json", src); err != nil {
		t.Fatal(err)
	}
	before := e.snapshot(t)
	c := hostileCtx(t, 3*time.Minute)
	_, err := e.sb.Agent.CreateContainer(c, r.msg())
	if refused(t, "app with /etc/hostname's source linked to /etc/veil/image.json", err) {
		e.checkShare(t, before)
		return
	}
	defer e.removeGuest(t, id)
	if _, err := e.sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	out, st, err := e.exec(id, "probe", e.probe(hostileApp))
	t.Logf("app's declared probe printed (status %d, %v): %.200q", st, err, out)
	if strings.Contains(out, "kernelRelease") {
		t.Errorf("LEAK: the probe showed the guest's /etc/veil/image.json to the host")
	}
	e.checkShare(t, before)
}

// linkedBindStorage adds to app's request a bind storage whose source is a link in the share
// to target, mounted below api.StorageDir.
func linkedBindStorage(target string) func(t *testing.T, e *hostileEnv) {
	return func(t *testing.T, e *hostileEnv) {
		id := e.newID("bind")
		link := id + "-link"
		e.cleanShare(t, id, link)
		if err := os.Symlink(target, filepath.Join(e.share, link)); err != nil {
			t.Fatal(err)
		}
		r := e.honest(t, id, hostileApp)
		mp := api.StorageDir + "/" + id
		r.storages = append(r.storages, &api.Storage{Driver: api.DriverBind, Source: api.SharedDir + "/" + link, MountPoint: mp})
		if e.policy == polAllowAll {
			r.mount("/data").Source = mp // shows what the storage is
		}
		e.attackCreate(t, "bind storage of a link to "+target, r, nil)
	}
}

// aliasPulledRoot binds a running container's guest-pulled root below the share, where
// CopyFile may write, and plants a cat there: the victim's declared probe would run it.
func aliasPulledRoot(t *testing.T, e *hostileEnv) {
	victim := e.victim(t)
	id := e.newID("alias")
	e.cleanShare(t, id)
	alias := api.SharedDir + "/" + id + "/alias"
	r := e.honest(t, id, hostileApp)
	r.storages = append(r.storages, &api.Storage{Driver: api.DriverBind, Source: api.ContainerRootfs(victim), MountPoint: alias})
	before := e.snapshot(t)
	_, err := e.sb.Agent.CreateContainer(hostileCtx(t, 3*time.Minute), r.msg())
	target := alias + "/usr/local/sbin/cat"
	if refused(t, "bind storage of "+api.ContainerRootfs(victim)+" at "+alias, err) {
		// Nothing is mounted there: CopyFile only writes the host's own share.
		_ = e.copyFile(t, target)
		e.probeOK(t, victim)
		e.checkShare(t, before, e.hostPath(alias))
		return
	}
	defer e.removeGuest(t, id)
	refused(t, "CopyFile "+target+" (the victim's root)", e.copyFile(t, target))
	e.probeOK(t, victim)
	e.checkShare(t, before)
}

// pullRootInShare asks for a guest-pull root below the share instead of
// api.ContainerRootfs(id), then plants an sh in it through CopyFile.
func pullRootInShare(t *testing.T, e *hostileEnv) {
	id := e.newID("pull")
	e.cleanShare(t, id)
	r := e.honest(t, id, hostileApp)
	root := api.SharedRootfs(id)
	r.spec.Root.Path, r.storages[0].MountPoint = root, root
	before := e.snapshot(t)
	c := hostileCtx(t, 3*time.Minute)
	_, err := e.sb.Agent.CreateContainer(c, r.msg())
	if err != nil || e.policy != polAllowAll {
		if refused(t, "guest-pull root at "+root, err) {
			e.checkShare(t, before)
			return
		}
	} else {
		t.Logf("allow-all: the guest-pull root at %s was accepted; the planted sh must not reach the container", root)
	}
	defer e.removeGuest(t, id)
	// runc resolves the container's program (sh) when it creates the container, so the
	// planted sh comes too late for it; app's probe (cat) is looked up on PATH when it runs,
	// /usr/local/sbin first.
	for _, p := range []string{"/bin/sh", "/usr/local/sbin/sh", "/usr/local/sbin/cat"} {
		t.Logf("CopyFile %s: %v", root+p, e.copyFile(t, root+p))
	}
	if _, err := e.sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	out := e.readUntil(id, "", 30*time.Second, "app-ok", hostileMarker)
	t.Logf("the container printed %q", out)
	noMarker(t, "the container", out)
	e.probeOK(t, id)
	e.checkShare(t, before, e.hostPath(root)) // a root the agent does not use is the host's own
}

// copyIntoPulledRoot plants a cat (first on PATH) and an sh straight into a running
// container's guest-pulled root.
func copyIntoPulledRoot(t *testing.T, e *hostileEnv) {
	victim := e.victim(t)
	before := e.snapshot(t)
	for _, p := range []string{"/usr/local/sbin/cat", "/bin/sh"} {
		path := api.ContainerRootfs(victim) + p
		refused(t, "CopyFile "+path, e.copyFile(t, path))
	}
	e.probeOK(t, victim)
	e.checkShare(t, before)
}

// copyIntoImageCache plants a cat into the cached image every guest-pulled container of it
// runs from.
func copyIntoImageCache(t *testing.T, e *hostileEnv) {
	e.victim(t) // the image is in the cache
	path := e.cachedRoot() + "/usr/local/sbin/cat"
	before := e.snapshot(t)
	refused(t, "CopyFile "+path, e.copyFile(t, path))
	v := e.victim(t) // a container created from the cache after the attack
	e.probeOK(t, v)
	e.checkShare(t, before, filepath.Join(e.share, v))
}

// cachedRoot is the guest's cache entry of the pod's image (docs/imagepull.md).
func (e *hostileEnv) cachedRoot() string {
	return api.ImagesDir + "/images/sha256/" + strings.TrimPrefix(e.digest, "sha256:") + "/linux_amd64/rootfs"
}

// poisonCacheThroughLink binds a link to the image cache below the share, where CopyFile may
// write, and plants a cat in the cached image: every container pulled by the pinned digest
// afterwards would run it. It runs last: when it succeeds, the cache stays poisoned.
func poisonCacheThroughLink(t *testing.T, e *hostileEnv) {
	e.victim(t) // the image is in the cache
	id := e.newID("poison")
	link := id + "-link"
	e.cleanShare(t, id, link)
	if err := os.Symlink(api.ImagesDir, filepath.Join(e.share, link)); err != nil {
		t.Fatal(err)
	}
	mp := api.SharedDir + "/" + id + "/cache"
	r := e.honest(t, id, hostileApp)
	r.storages = append(r.storages, &api.Storage{Driver: api.DriverBind, Source: api.SharedDir + "/" + link, MountPoint: mp})
	before := e.snapshot(t)
	_, err := e.sb.Agent.CreateContainer(hostileCtx(t, 3*time.Minute), r.msg())
	target := mp + strings.TrimPrefix(e.cachedRoot(), api.ImagesDir) + "/usr/local/sbin/cat"
	if refused(t, "bind storage of a link to "+api.ImagesDir+" at "+mp, err) {
		_ = e.copyFile(t, target) // nothing is mounted there: it writes the host's own share
	} else {
		defer e.removeGuest(t, id)
		refused(t, "CopyFile "+target+" (the image cache)", e.copyFile(t, target))
	}
	v := e.victim(t) // an honest container, pulled by the pinned digest after the attack
	e.probeOK(t, v)
	e.checkShare(t, before, e.hostPath(mp), filepath.Join(e.share, v))
}

// copyAcrossMount mounts a tmpfs storage below the share and writes below it: CopyFile may not
// cross from the share into a mount the guest made.
func copyAcrossMount(t *testing.T, e *hostileEnv) {
	id := e.newID("scratch")
	e.cleanShare(t, id)
	scratch := api.SharedDir + "/" + id + "/scratch"
	r := e.honest(t, id, hostileApp)
	r.storages = append(r.storages, &api.Storage{Driver: api.DriverTmpfs, Source: "tmpfs", MountPoint: scratch})
	before := e.snapshot(t)
	_, err := e.sb.Agent.CreateContainer(hostileCtx(t, 3*time.Minute), r.msg())
	if err != nil {
		refused(t, "tmpfs storage at "+scratch, err)
		e.checkShare(t, before)
		return
	}
	defer e.removeGuest(t, id)
	t.Logf("the tmpfs storage at %s was accepted", scratch)
	refused(t, "CopyFile below the tmpfs at "+scratch, e.copyFile(t, scratch+"/planted"))
	e.checkShare(t, before)
}
