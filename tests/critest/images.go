//go:build e2e

package main

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/veil-runtime/veil/tests/internal/busyboximage"
)

const (
	passwd = "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	group = "root:x:0:\nwww-data:x:33:\nusers:x:100:\nnogroup:x:65534:\n"
)

// image is one test image: its path in the registry (the upstream name without the registry
// host: the hosts.toml mirrors keep the path), its config and the layers above the base.
type image struct {
	refs  []string
	cfg   v1.Config
	extra map[string]file // files of an extra layer
}

// file is a regular file of a layer.
type file struct {
	data string
	mode int64
}

// nginxScript stands in for nginx (pkg/validate's NamespaceOption tests look for a process
// named nginx, its pid in /var/run/nginx.pid and "master process" in its command line): a
// script named nginx (so its comm is "nginx") that runs busybox's httpd and stops on SIGTERM.
const nginxScript = `#!/bin/sh
echo $$ >/var/run/nginx.pid
echo "nginx: master process (busybox httpd on port ${PORT:-80})"
httpd -f -v -p "${PORT:-80}" -h /www &
child=$!
trap 'kill $child; exit 0' TERM INT
wait $child
`

// pgrepScript: Debian's busybox has no pgrep applet; critest runs `pgrep sleep`.
const pgrepScript = "#!/bin/sh\n" +
	"for f in /proc/[0-9]*/stat; do\n" +
	"  read -r pid comm state rest <\"$f\" 2>/dev/null || continue\n" +
	"  [ \"$comm\" = \"($1)\" ] && [ \"$state\" != Z ] && echo \"$pid\"\n" +
	"done\ntrue\n"

// ipcsScript: Debian's busybox has no ipcs applet; critest's HostIpc tests run `ipcs -m` and
// look for a segment id (so the headers carry no digits).
const ipcsScript = `#!/bin/sh
echo "------ Shared Memory Segments --------"
echo "key        shmid      perms      bytes"
sed 1d /proc/sysvipc/shm | while read key shmid perms size rest; do echo "$key $shmid $perms $size"; done
`

// nnpSource is the nonewprivs test image's program, installed setuid root: it prints its
// effective uid (registry.k8s.io/e2e-test-images/nonewprivs does the same).
const nnpSource = `package main

import (
	"fmt"
	"os"
)

func main() { fmt.Printf("Effective uid: %d\n", os.Geteuid()) }
`

// testImages are the images critest v1.37.0 uses (pkg/validate/consts*.go, framework/util.go,
// images/*/Dockerfile), rebuilt on Debian's dynamically linked busybox. Every entry is a
// distinct image (a label names it); the refs of one entry are tags of the same image. The
// image pinned by digest (test-image-digest@sha256:9700f9...) cannot be rebuilt: that test fails.
func testImages(nnp []byte) []image {
	const cri = "k8s-staging-cri-tools/"
	www := map[string]file{"www/index.html": {data: "<html><body>Welcome to nginx!</body></html>\n", mode: 0o644}}
	sh := busyboximage.Shell()
	user := func(u string) v1.Config { return v1.Config{Cmd: []string{"sh"}, User: u} }
	nginx := v1.Config{Cmd: []string{"nginx", "-g", "daemon off; master process"}}
	hostnet := nginx
	hostnet.Env = []string{"PORT=12003"}
	httpd := v1.Config{Cmd: []string{"sh", "-c", "echo httpd: busybox httpd on port 80; exec nginx"}}
	imgs := []image{
		{refs: []string{"e2e-test-images/busybox:1.29-2"}, cfg: sh},
		{refs: []string{"e2e-test-images/nginx:1.14-2"}, cfg: nginx, extra: www},
		{refs: []string{"e2e-test-images/httpd:2.4.39-4"}, cfg: httpd, extra: www},
		{refs: []string{"e2e-test-images/nonewprivs:1.3"}, cfg: v1.Config{Cmd: []string{"/usr/local/bin/nnp"}},
			extra: map[string]file{"usr/local/bin/nnp": {data: string(nnp), mode: 0o4755}}},
		{refs: []string{cri + "hostnet-nginx-amd64:latest"}, cfg: hostnet, extra: www},
		{refs: []string{"pause:3.10"}, cfg: busyboximage.Pause()},
		{refs: []string{"pause:3.9"}, cfg: busyboximage.Pause()},
		{refs: []string{cri + "test-image-user-uid:latest"}, cfg: user("1002")},
		{refs: []string{cri + "test-image-user-username:latest"}, cfg: user("www-data")},
		{refs: []string{cri + "test-image-user-uid-group:latest"}, cfg: user("1003:users")},
		{refs: []string{cri + "test-image-user-username-group:latest"}, cfg: user("www-data:users")},
		{refs: []string{cri + "test-image-predefined-group:latest"}, cfg: user("1000"),
			extra: map[string]file{
				"etc/passwd": {data: passwd + "default-user:x:1000:1000::/home/default-user:/bin/sh\n", mode: 0o644},
				"etc/group":  {data: group + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n", mode: 0o644},
			}},
		{refs: []string{cri + "test-image-latest:latest"}, cfg: sh},
		{refs: []string{cri + "test-image-tag:test"}, cfg: sh},
		{refs: []string{cri + "test-image-tag:all"}, cfg: sh},
		{refs: []string{cri + "test-image-tags:1", cri + "test-image-tags:2", cri + "test-image-tags:3"}, cfg: sh},
	}
	for i := 1; i <= 3; i++ {
		imgs = append(imgs, image{refs: []string{fmt.Sprintf("%stest-image-%d:latest", cri, i)}, cfg: sh,
			extra: map[string]file{fmt.Sprintf("test-%d", i): {data: fmt.Sprintf("test-%d\n", i), mode: 0o644}}})
	}
	return imgs
}

// buildNNP compiles nnpSource (static, no cgo) in a temporary directory.
func buildNNP() ([]byte, error) {
	dir, err := os.MkdirTemp("", "veil-critest-nnp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(nnpSource), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module nnp\n\ngo 1.22\n"), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("go", "build", "-o", "nnp", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build the nonewprivs program: %v: %s", err, out)
	}
	return os.ReadFile(filepath.Join(dir, "nnp"))
}

// pushImages pushes every test image to the registry at host.
func pushImages(host, busyboxRoot string) error {
	base, err := busyboxLayer(busyboxRoot)
	if err != nil {
		return err
	}
	nnp, err := buildNNP()
	if err != nil {
		return err
	}
	for _, im := range testImages(nnp) {
		layers := []v1.Layer{base}
		if len(im.extra) > 0 {
			l, err := filesLayer(im.extra, nil)
			if err != nil {
				return err
			}
			layers = append(layers, l)
		}
		cfg := im.cfg
		cfg.Labels = map[string]string{"io.veil.critest.image": im.refs[0]}
		img, err := busyboximage.Image(cfg, layers...)
		if err != nil {
			return err
		}
		for _, ref := range im.refs {
			if err := busyboximage.Push(host+"/"+ref, img); err != nil {
				return err
			}
		}
	}
	return nil
}

var lddLine = regexp.MustCompile(`(/\S+)\s+\(0x`)

// busyboxLayer is Debian's dynamically linked busybox (unpacked from the busybox package
// under root) with the host's shared libraries it needs, a link per applet in /bin, and
// /etc/passwd and /etc/group with root, www-data and nobody.
func busyboxLayer(root string) (v1.Layer, error) {
	bb := filepath.Join(root, "bin", "busybox")
	if _, err := os.Stat(bb); err != nil {
		return nil, fmt.Errorf("Debian's busybox not unpacked at %s: %w", root, err)
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", bb, err)
	}
	ldd, err := exec.Command("ldd", bb).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bb, err)
	}
	host := map[string]string{"bin/busybox": bb}
	for _, m := range lddLine.FindAllStringSubmatch(string(ldd), -1) {
		real, err := filepath.EvalSymlinks(m[1])
		if err != nil {
			return nil, err
		}
		host[strings.TrimPrefix(m[1], "/")] = real
	}
	files := map[string]file{
		"etc/passwd":     {data: passwd, mode: 0o644},
		"etc/group":      {data: group, mode: 0o644},
		"usr/bin/pgrep":  {data: pgrepScript, mode: 0o755},
		"usr/sbin/nginx": {data: nginxScript, mode: 0o755},
		"usr/bin/ipcs":   {data: ipcsScript, mode: 0o755},
	}
	for n, src := range host {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		files[n] = file{data: string(data), mode: 0o755}
	}
	// Hard links, as in the upstream busybox image: masking /bin/ls (MaskedPaths) must not
	// mask the shell.
	links := map[string]string{}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" {
			links["bin/"+applet] = "bin/busybox"
		}
	}
	return filesLayer(files, links)
}

// filesLayer makes a layer of the standard directories, files and hard links (name to target).
func filesLayer(files map[string]file, links map[string]string) (v1.Layer, error) {
	dirs := map[string]bool{}
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "root", "run", "var", "www", "home", "var/run", "usr/bin", "usr/sbin"} {
		dirs[d] = true
	}
	for n := range files {
		for d := filepath.Dir(n); d != "."; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	fileNames := make([]string, 0, len(files))
	for n := range files {
		fileNames = append(fileNames, n)
	}
	sort.Strings(fileNames)
	return busyboximage.Layer(func(tw *tar.Writer) error {
		for _, d := range names {
			mode := int64(0o755)
			if d == "tmp" {
				mode = 0o1777
			}
			if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: mode}); err != nil {
				return err
			}
		}
		for _, n := range fileNames {
			f := files[n]
			if err := tw.WriteHeader(&tar.Header{Name: n, Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
				return err
			}
			if _, err := io.WriteString(tw, f.data); err != nil {
				return err
			}
		}
		for _, n := range sortedKeys(links) {
			if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeLink, Linkname: links[n], Mode: 0o755}); err != nil {
				return err
			}
		}
		return nil
	})
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
