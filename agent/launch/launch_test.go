package launch

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/initdata"
)

// fakeSys makes a sysfs with the given disks (name -> serial) and virtio block devices.
func fakeSys(t *testing.T, disks map[string]string, virtioBlocks int) Paths {
	t.Helper()
	root := t.TempDir()
	p := Paths{SysBlock: filepath.Join(root, "block"), VirtioBus: filepath.Join(root, "bus"), DevDir: filepath.Join(root, "dev")}
	for _, d := range []string{p.SysBlock, p.VirtioBus, p.DevDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range slices.Sorted(maps.Keys(disks)) { // the i-th name in order is 253:16*i
		dir := filepath.Join(p.SysBlock, name)
		_ = os.MkdirAll(dir, 0o755)
		_ = os.WriteFile(filepath.Join(dir, "serial"), []byte(disks[name]+"\n"), 0o644)
		_ = os.WriteFile(filepath.Join(dir, "dev"), []byte("253:"+strconv.Itoa(16*i)+"\n"), 0o644)
	}
	for i := range virtioBlocks {
		dir := filepath.Join(p.VirtioBus, "virtio"+strconv.Itoa(i))
		_ = os.MkdirAll(dir, 0o755)
		_ = os.WriteFile(filepath.Join(dir, "device"), []byte(virtioBlockID+"\n"), 0o644)
	}
	return p
}

func TestFindDevice(t *testing.T) {
	ctx := context.Background()
	p := fakeSys(t, map[string]string{"vda": "other", "vdb": initdata.DiskSerial, "sda": initdata.DiskSerial}, 2)
	dev, err := FindDevice(ctx, p, initdata.DiskSerial, 0)
	if err != nil || dev != filepath.Join(p.DevDir, "vdb") {
		t.Fatalf("FindDevice = %q, %v; want dev/vdb", dev, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != unix.Mkdev(253, 32) { // sda, vda, vdb
		t.Fatalf("node %s: %+v, %v; want block device 253:32", dev, st, err)
	}
	if again, err := FindDevice(ctx, p, initdata.DiskSerial, 0); err != nil || again != dev {
		t.Fatalf("FindDevice with the node present = %q, %v", again, err)
	}

	if dev, err := FindDevice(ctx, fakeSys(t, map[string]string{"vda": "x"}, 1), initdata.DiskSerial, time.Second); err != nil || dev != "" {
		t.Fatalf("no initdata disk: %q, %v; want none", dev, err)
	}
	start := time.Now()
	if dev, err := FindDevice(ctx, fakeSys(t, nil, 1), initdata.DiskSerial, 200*time.Millisecond); err != nil || dev != "" {
		t.Fatalf("a device still probing: %q, %v", dev, err)
	} else if time.Since(start) < 200*time.Millisecond {
		t.Fatal("did not wait for the virtio block device that has no disk yet")
	}
	two := fakeSys(t, map[string]string{"vda": initdata.DiskSerial, "vdb": initdata.DiskSerial}, 2)
	if _, err := FindDevice(ctx, two, initdata.DiskSerial, 0); err == nil || !strings.Contains(err.Error(), "vda, vdb") {
		t.Fatalf("two disks with the serial: %v", err)
	}
	wrong := fakeSys(t, map[string]string{"vda": initdata.DiskSerial}, 1)
	_ = os.WriteFile(filepath.Join(wrong.DevDir, "vda"), nil, 0o600)
	if _, err := FindDevice(ctx, wrong, initdata.DiskSerial, 0); err == nil || !strings.Contains(err.Error(), "not block device") {
		t.Fatalf("a regular file at the node: %v", err)
	}
}

func writeDisk(t *testing.T, doc string) string {
	t.Helper()
	img, err := initdata.EncodeDisk([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "initdata.img")
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const goodDoc = `version = "0.1.0"
algorithm = "sha256"

[data]
"policy.rego" = '''
package agent_policy

default CheckRequest := true
'''
`

func TestLoadDisk(t *testing.T) {
	ctx := context.Background()
	c := DefaultConfig(api.TEENone)
	e, err := LoadDisk(ctx, c, writeDisk(t, goodDoc))
	if err != nil {
		t.Fatalf("LoadDisk: %v", err)
	}
	if d, _ := e.Decide(ctx, "Check", &api.CheckRequest{}); !d.Allow {
		t.Fatal("the initdata policy does not allow Check")
	}
	if d, _ := e.Decide(ctx, "Version", &api.VersionRequest{}); d.Allow {
		t.Fatal("the initdata policy allows Version, which it has no rule for")
	}
	for name, tc := range map[string]struct{ doc, want string }{
		"syntax error": {strings.Replace(goodDoc, ":= true", ":= ", 1), "initdata: policy.rego:4: rego_parse_error: unexpected eof token"},
		"bad document": {strings.Replace(goodDoc, "0.1.0", "9", 1), `initdata: version: "9" is not supported`},
		"not toml":     {"version = ", "initdata: not valid TOML"},
	} {
		_, err := LoadDisk(ctx, c, writeDisk(t, tc.doc))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: LoadDisk = %v, want one line starting %q", name, err, tc.want)
		}
	}
	noPolicy := `version = "0.1.0"
algorithm = "sha256"
[data]
"aa.toml" = "x"
`
	if _, err := LoadDisk(ctx, c, writeDisk(t, noPolicy)); err != nil {
		t.Errorf("tee none, initdata without a policy: %v, want allow-all", err)
	}
	hd := initdata.HostData(mustDigest(t, noPolicy), 32)
	if _, err := LoadDisk(ctx, Config{TEE: "snp", Reader: fixedReader(hd)}, writeDisk(t, noPolicy)); err == nil {
		t.Error("a confidential guest accepted initdata without a policy")
	}
}

func mustDigest(t *testing.T, doc string) []byte {
	d, err := initdata.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return d.Digest()
}

type fixedReader []byte

func (r fixedReader) HostData(context.Context) ([]byte, error) {
	if r == nil {
		return nil, errors.New("no report")
	}
	return r, nil
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	digest := mustDigest(t, goodDoc)
	if err := Verify(ctx, api.TEENone, nil, digest); err != nil {
		t.Errorf("tee none: %v", err)
	}
	if err := Verify(ctx, "snp", fixedReader(initdata.HostData(digest, 32)), digest); err != nil {
		t.Errorf("snp, matching host data: %v", err)
	}
	if err := Verify(ctx, "tdx", fixedReader(initdata.HostData(digest, 48)), digest); err != nil {
		t.Errorf("tdx, matching mrconfigid: %v", err)
	}
	if err := Verify(ctx, "snp", fixedReader(make([]byte, 32)), nil); err != nil {
		t.Errorf("snp, no initdata and zero host data: %v", err)
	}
	for name, tc := range map[string]struct {
		r      LaunchDataReader
		digest []byte
		want   string
	}{
		"no reader":        {nil, digest, "cannot read the launch's host data"},
		"reader fails":     {fixedReader(nil), digest, "no report"},
		"mismatch":         {fixedReader(make([]byte, 32)), digest, "does not match the launch's host data"},
		"no initdata, set": {fixedReader(initdata.HostData(digest, 32)), nil, "not zeros"},
	} {
		if err := Verify(ctx, "snp", tc.r, tc.digest); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Verify = %v, want %q", name, err, tc.want)
		}
	}
}

// The initdata's image-policy.json is parsed at boot: a bad one stops the agent with a
// one-line error naming the entry and the fault; none leaves ImagePolicy nil (accept all).
func TestBootDiskImagePolicy(t *testing.T) {
	ctx := context.Background()
	c := DefaultConfig(api.TEENone)
	l, err := BootDisk(ctx, c, writeDisk(t, goodDoc))
	if err != nil || l.ImagePolicy != nil {
		t.Fatalf("no image policy: %+v, %v", l, err)
	}
	with := func(policy string) string {
		return goodDoc + `"image-policy.json" = '''` + policy + `'''` + "\n"
	}
	l, err = BootDisk(ctx, c, writeDisk(t, with(`{"default": [{"type": "reject"}]}`)))
	if err != nil || l.ImagePolicy == nil || l.ImagePolicy.Default[0].Type != "reject" {
		t.Fatalf("image policy: %+v, %v", l, err)
	}
	_, err = BootDisk(ctx, c, writeDisk(t, with(`{"default": [{"type": "acceptIfLucky"}]}`)))
	want := `initdata: image-policy.json: image policy: default[0]: unknown requirement type "acceptIfLucky"`
	if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("bad image policy: %v, want %q", err, want)
	}
}
