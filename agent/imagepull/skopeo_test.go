package imagepull_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/veil-runtime/veil/agent/imagepull"
	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/kbs-client/keyprovider/keyprovidertest"
)

// TestSkopeoEncrypted: skopeo 1.9.3 (Debian's source) encrypts an image through veil-keyprovider (the
// ocicrypt "cmd" form, as docs/keyprovider.md configures it), which creates the KEK in a real
// KBS; a sim guest that attests to that KBS pulls and decrypts it. An image that another,
// air-gapped veil-keyprovider encrypted with a KEK the KBS does not hold is refused, naming
// that key.
func TestSkopeoEncrypted(t *testing.T) {
	skopeo, err := keyprovidertest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "veil-keyprovider")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/veil-keyprovider").CombinedOutput(); err != nil {
		t.Fatalf("go build veil-keyprovider: %v\n%s", err, out)
	}
	k := kbstest.NewKBS(t, true)
	reg := newRegistry(t)
	plain, _ := reg.push(t, "plain", image(t, testConfig, "amd64", layer(t, dir("etc"), file("etc/app.conf", "mode=confidential"), file("app", "binary"))))

	encrypt := func(dst, kid string, args ...string) string {
		t.Helper()
		enc := keyprovidertest.Encrypter{Skopeo: skopeo, KeyProvider: bin, Args: args}
		enc.Encrypt(t, "docker://"+plain, "docker://"+reg.host+"/"+dst, kid)
		ref, err := name.ParseReference(reg.host+"/"+dst, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Get(ref)
		if err != nil {
			t.Fatal(err)
		}
		img, err := desc.Image()
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range m.Layers {
			if !strings.HasSuffix(string(l.MediaType), "+encrypted") || l.Annotations[imagepull.AnnotationKeysPrefix+imagepull.VeilProviderName] == "" {
				t.Fatalf("layer %s: media type %s, annotations %v", l.Digest, l.MediaType, l.Annotations)
			}
		}
		return reg.host + "/" + strings.Split(dst, ":")[0] + "@" + desc.Digest.String()
	}

	// Encrypted with a new KEK that veil-keyprovider creates in the KBS.
	ref := encrypt("enc:1", kekURI, "--kek-dir", t.TempDir(), "--kbs", k.URL(), "--admin-key", k.Env.WriteAdminKey(t))
	o := reg.opts()
	o.Dest = filepath.Join(t.TempDir(), "rootfs")
	o.KeyProvider = imagepull.NewKBSKeyProvider(hub(t, k, kbstest.Measurement))
	if _, err := imagepull.Pull(context.Background(), ref, o); err != nil {
		t.Fatalf("pull of the image skopeo encrypted: %v", err)
	}
	if got, want := tree(t, o.Dest), []string{"app=binary", "etc/", "etc/app.conf=mode=confidential"}; !slices.Equal(got, want) {
		t.Fatalf("tree %q, want %q", got, want)
	}

	// Encrypted air-gapped with a KEK the KBS never received: refused, naming it.
	other := encrypt("other:1", "kbs:///default/image-kek/other", "--kek-dir", t.TempDir())
	o.Dest = filepath.Join(t.TempDir(), "rootfs")
	_, err = imagepull.Pull(context.Background(), other, o)
	if err == nil || !strings.Contains(err.Error(), "kbs:///default/image-kek/other") {
		t.Fatalf("pull with a KEK the KBS lacks: %v", err)
	}
	if _, serr := os.Stat(o.Dest); !os.IsNotExist(serr) {
		t.Fatalf("a refused pull left %s", o.Dest)
	}
}
