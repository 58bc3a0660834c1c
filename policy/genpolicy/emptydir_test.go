package genpolicy_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/genpolicy"
	"github.com/veil-runtime/veil/policy/policytest"
)

// emptyDirPod has a disk and a memory emptyDir, both mounted by two containers.
const emptyDirPod = `apiVersion: v1
kind: Pod
metadata: {name: cache}
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
  - name: writer
    image: ${REG}/busybox:1
    volumeMounts:
    - {name: cache, mountPath: /cache}
    - {name: mem, mountPath: /mem}
  - name: reader
    image: ${REG}/busybox:1
    volumeMounts:
    - {name: cache, mountPath: /cache, readOnly: true}
    - {name: mem, mountPath: /mem}
  volumes:
  - {name: cache, emptyDir: {}}
  - {name: mem, emptyDir: {medium: Memory}}
`

// The policy of a pod with emptyDir volumes admits them only as the guest's own volumes: the
// storages the shim sends, each with the volume's medium; a host that shares a directory of
// its own at the mount instead, or sends a storage the pod does not declare, is refused.
func TestEmptyDirPolicy(t *testing.T) {
	f := newFixture(t)
	for _, guestPull := range []bool{false, true} {
		res, err := f.generate(t, emptyDirPod, genpolicy.Options{GuestPull: guestPull})
		if err != nil {
			t.Fatal(err)
		}
		w := res.Workloads[0]
		reader := w.Data.Containers[1]
		if m := reader.Mounts["/cache"]; m.EmptyDir != "cache" || m.EmptyDirMemory || m.Volume || len(m.Options) != 1 {
			t.Fatalf("reader /cache %+v", m)
		}
		if m := reader.Mounts["/mem"]; m.EmptyDir != "mem" || !m.EmptyDirMemory || m.Volume {
			t.Fatalf("reader /mem %+v", m)
		}
		e, err := policy.New(w.Policy)
		if err != nil {
			t.Fatal(err)
		}
		c := policytest.Container{Name: "writer", ImageDigest: f.digests["busybox:1"], Args: []string{"sh"},
			Env: []string{imagePath, "HOSTNAME=cache"}, NoServiceAccount: true,
			EmptyDirs: map[string]string{"/cache": "cache", "/mem": "mem"}}
		request := func(mutate func(r *api.CreateContainerRequest, s *specStorages)) *api.CreateContainerRequest {
			var r *api.CreateContainerRequest
			if guestPull {
				r = policytest.GuestPull("c1", "busybox:1", policytest.Spec(c))
			} else {
				r = policytest.CreateContainer("c1", policytest.Spec(c))
			}
			s := &specStorages{r: r}
			for _, st := range r.Storages {
				if st.GetDriver() == api.DriverEmptyDir && st.GetSource() == "mem" {
					st.Fstype = api.EmptyDirMemory // policytest's are all of the disk medium
				}
			}
			if mutate != nil {
				mutate(r, s)
			}
			return r
		}
		ctx := context.Background()
		for _, tc := range []struct {
			name   string
			mutate func(r *api.CreateContainerRequest, s *specStorages)
			want   string // "" allows
		}{
			{"the guest's volumes", nil, ""},
			{"no storage (the volumes exist already)", func(r *api.CreateContainerRequest, _ *specStorages) {
				r.Storages = dropEmptyDirs(r.Storages)
			}, ""},
			{"the host shares /cache", func(r *api.CreateContainerRequest, s *specStorages) {
				s.setSource(t, "/cache", api.SharedVolume("c1", 7))
			}, `mount at "/cache" is not allowed`},
			{"the host shares another guest path", func(r *api.CreateContainerRequest, s *specStorages) {
				s.setSource(t, "/cache", api.EmptyDirPath("mem"))
			}, `mount at "/cache" is not allowed`},
			{"the memory volume on disk", func(r *api.CreateContainerRequest, _ *specStorages) {
				for _, st := range r.Storages {
					if st.GetSource() == "mem" {
						st.Fstype = ""
					}
				}
			}, `emptydir storage "mem" (fstype "", mount_point "/run/veil/emptydir/mem", options []) is not one of the container's emptyDir volumes ["cache", "mem"]`},
			{"an undeclared volume", func(r *api.CreateContainerRequest, _ *specStorages) {
				r.Storages = append(r.Storages, &api.Storage{Driver: api.DriverEmptyDir, Source: "other", MountPoint: api.EmptyDirPath("other")})
			}, `emptydir storage "other"`},
			{"a volume elsewhere", func(r *api.CreateContainerRequest, _ *specStorages) {
				r.Storages = append(dropEmptyDirs(r.Storages), &api.Storage{Driver: api.DriverEmptyDir, Source: "cache", MountPoint: api.ContainersDir})
			}, `emptydir storage "cache" (fstype "", mount_point "/run/veil/containers"`},
			{"options", func(r *api.CreateContainerRequest, _ *specStorages) {
				r.Storages = append(dropEmptyDirs(r.Storages), &api.Storage{Driver: api.DriverEmptyDir, Source: "cache", MountPoint: api.EmptyDirPath("cache"), Options: []string{"size=1"}})
			}, `options ["size=1"]`},
		} {
			d, err := e.Judge(ctx, "CreateContainer", request(tc.mutate))
			if err != nil {
				t.Fatal(err)
			}
			if (tc.want == "") != d.Allow || !strings.Contains(d.Reason, tc.want) {
				t.Errorf("guest pull %v: %s: %+v, want %q", guestPull, tc.name, d, tc.want)
			}
		}
	}
}

// specStorages edits a request's spec.
type specStorages struct{ r *api.CreateContainerRequest }

func (s *specStorages) setSource(t *testing.T, dst, src string) {
	t.Helper()
	spec := decodeSpec(t, s.r.OciSpec)
	for i := range spec.Mounts {
		if spec.Mounts[i].Destination == dst {
			spec.Mounts[i].Source = src
		}
	}
	s.r.OciSpec = policytest.JSON(spec)
}

func decodeSpec(t *testing.T, b []byte) *specs.Spec {
	t.Helper()
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func dropEmptyDirs(in []*api.Storage) []*api.Storage {
	var out []*api.Storage
	for _, s := range in {
		if s.GetDriver() != api.DriverEmptyDir {
			out = append(out, s)
		}
	}
	return out
}

func TestEmptyDirRefusedShapes(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct{ from, to, want string }{
		{"- {name: cache, mountPath: /cache}\n    - {name: mem, mountPath: /mem}\n  - name: reader",
			"- {name: cache, mountPath: /cache, subPath: x}\n    - {name: mem, mountPath: /mem}\n  - name: reader",
			"container writer: volumeMount /cache of emptyDir volume cache: subPath is not supported"},
		{"{medium: Memory}", "{medium: HugePages}", `emptyDir volume mem: medium "HugePages" is not supported`},
	} {
		y := strings.Replace(emptyDirPod, tc.from, tc.to, 1)
		if y == emptyDirPod {
			t.Fatalf("%q not in the pod", tc.from)
		}
		if _, err := f.generate(t, y, genpolicy.Options{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}
