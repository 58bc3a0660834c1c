package imagesig_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/veil-runtime/veil/agent/cdh"
	"github.com/veil-runtime/veil/agent/imagepull"
	"github.com/veil-runtime/veil/agent/imagesig"
	"github.com/veil-runtime/veil/agent/imagesig/imagesigtest"
	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/policy/imagepolicy"
)

// testRegistry is go-containerregistry's registry on loopback, logging every request.
type testRegistry struct {
	host string
	mu   sync.Mutex
	reqs []string
}

func newRegistry(t *testing.T) *testRegistry {
	r := &testRegistry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.reqs = append(r.reqs, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

func (r *testRegistry) reset() { r.mu.Lock(); r.reqs = nil; r.mu.Unlock() }

func (r *testRegistry) requests(substr string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, q := range r.reqs {
		if strings.Contains(q, substr) {
			out = append(out, q)
		}
	}
	return out
}

// push stores a random image as repo:v1 and returns the tag reference and its digest.
func (r *testRegistry) push(t *testing.T, repo string, img v1.Image) (string, v1.Hash) {
	t.Helper()
	ref := r.host + "/" + repo + ":v1"
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ref, d
}

func randomImage(t *testing.T) v1.Image {
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// copySig copies the cosign signature manifest of digest from in repo `from` to the signature
// tag of digest `to` in repo `into` (an attacker replaying a signature).
func copySig(t *testing.T, host, from string, fromDigest v1.Hash, into string, toDigest v1.Hash) {
	t.Helper()
	src, _ := name.NewTag(fmt.Sprintf("%s/%s:sha256-%s.sig", host, from, fromDigest.Hex), name.Insecure)
	dst, _ := name.NewTag(fmt.Sprintf("%s/%s:sha256-%s.sig", host, into, toDigest.Hex), name.Insecure)
	img, err := remote.Image(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(dst, img); err != nil {
		t.Fatal(err)
	}
}

func policyOf(t *testing.T, doc string) *imagepolicy.Policy {
	t.Helper()
	p, err := imagepolicy.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// pull runs the real pull path (imagepull.Pull with the Verifier) into a fresh directory.
func pull(t *testing.T, r *testRegistry, v imagepull.Verifier, ref string, pin v1.Hash) error {
	t.Helper()
	r.reset()
	_, err := imagepull.Pull(context.Background(), ref, imagepull.Options{
		Digest: pin.String(), Dest: t.TempDir() + "/rootfs", InsecureRegistries: []string{r.host},
		NoSameOwner: os.Geteuid() != 0, Verifier: v,
	})
	return err
}

// refused checks err is a refusal wrapping want whose message names ref, the rule and why.
func refused(t *testing.T, r *testRegistry, err, want error, ref, rule, why string) {
	t.Helper()
	if !errors.Is(err, imagesig.ErrRefused) || !errors.Is(err, want) {
		t.Fatalf("err %v, want a refusal wrapping %v", err, want)
	}
	t.Logf("refused: %v", err)
	for _, s := range []string{ref, rule, why} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if blobs := r.requests("/blobs/"); len(blobs) != 0 && want != imagesig.ErrWrongKey && want != imagesig.ErrDigestMismatch && want != imagesig.ErrIdentity {
		t.Errorf("blobs fetched for a refused image: %v", blobs)
	}
	// Nothing of the image itself is fetched: no manifest by its tag, no layer.
	for _, q := range r.requests("/manifests/") {
		if !strings.Contains(q, ".sig") {
			t.Errorf("image manifest fetched for a refused image: %s", q)
		}
	}
}

func TestCosignSignatures(t *testing.T) {
	r := newRegistry(t)
	key, other := imagesigtest.GenerateKeyPair(t), imagesigtest.GenerateKeyPair(t)

	signedRef, signedPin := r.push(t, "signed/app", randomImage(t))
	imagesigtest.Sign(t, key, strings.TrimSuffix(signedRef, ":v1")+"@"+signedPin.String())
	unsignedRef, unsignedPin := r.push(t, "signed/unsigned", randomImage(t))
	otherRef, otherPin := r.push(t, "signed/other", randomImage(t))
	imagesigtest.Sign(t, other, strings.TrimSuffix(otherRef, ":v1")+"@"+otherPin.String())
	replayRef, replayPin := r.push(t, "signed/replay", randomImage(t))
	copySig(t, r.host, "signed/app", signedPin, "signed/replay", replayPin)
	// The signed image, under another name: same digest, so the signature matches it, but
	// the signature names signed/app.
	img, err := remote.Image(mustTag(t, signedRef))
	if err != nil {
		t.Fatal(err)
	}
	renamedRef, _ := r.push(t, "signed/renamed", img)
	copySig(t, r.host, "signed/app", signedPin, "signed/renamed", signedPin)
	openRef, openPin := r.push(t, "open/app", randomImage(t))
	rejRef, rejPin := r.push(t, "banned/app", randomImage(t))

	doc := `{
	  "default": [{"type": "reject"}],
	  "transports": {"docker": {
	    "` + r.host + `/signed": [{"type": "sigstoreSigned", "keyData": "` + key.KeyData() + `", "signedIdentity": {"type": "matchRepository"}}],
	    "` + r.host + `/open": [{"type": "insecureAcceptAnything"}]
	  }}
	}`
	v := imagesig.New(policyOf(t, doc), nil)
	signedScope := `transports.docker["` + r.host + `/signed"][0] (sigstoreSigned)`

	t.Run("signed accepted", func(t *testing.T) {
		if err := pull(t, r, v, signedRef, signedPin); err != nil {
			t.Fatal(err)
		}
		if len(r.requests(".sig")) == 0 {
			t.Error("the signature tag was not fetched")
		}
	})
	t.Run("signed, by digest, default identity", func(t *testing.T) {
		v := imagesig.New(policyOf(t, `{"default":[{"type":"sigstoreSigned","keyData":"`+key.KeyData()+`"}]}`), nil)
		if err := pull(t, r, v, strings.TrimSuffix(signedRef, ":v1")+"@"+signedPin.String(), signedPin); err != nil {
			t.Fatal(err)
		}
	})
	// cosign writes the bare repository as docker-reference (signing by digest or by tag), so
	// containers/image's default identity refuses a pull by tag: policies say
	// matchRepository (docs/imagesig.md).
	t.Run("by tag, default identity refused", func(t *testing.T) {
		v := imagesig.New(policyOf(t, `{"default":[{"type":"sigstoreSigned","keyData":"`+key.KeyData()+`"}]}`), nil)
		err := pull(t, r, v, signedRef, signedPin)
		refused(t, r, err, imagesig.ErrIdentity, signedRef, "default[0] (sigstoreSigned)", "without a tag or digest, and matchRepoDigestOrExact needs")
	})
	t.Run("unsigned refused", func(t *testing.T) {
		err := pull(t, r, v, unsignedRef, unsignedPin)
		refused(t, r, err, imagesig.ErrNoSignature, unsignedRef, signedScope, "no cosign signature")
	})
	t.Run("another key refused", func(t *testing.T) {
		err := pull(t, r, v, otherRef, otherPin)
		refused(t, r, err, imagesig.ErrWrongKey, otherRef, signedScope, "does not verify with keyData")
	})
	t.Run("signature of another digest refused", func(t *testing.T) {
		err := pull(t, r, v, replayRef, replayPin)
		refused(t, r, err, imagesig.ErrDigestMismatch, replayRef, signedScope, "is for "+signedPin.String()+", not the pinned "+replayPin.String())
	})
	t.Run("signature of another repository refused", func(t *testing.T) {
		err := pull(t, r, v, renamedRef, signedPin)
		refused(t, r, err, imagesig.ErrIdentity, renamedRef, signedScope, `the signature is for repository "`+r.host+`/signed/app"`)
	})
	t.Run("rejected registry refused", func(t *testing.T) {
		err := pull(t, r, v, rejRef, rejPin)
		refused(t, r, err, imagesig.ErrRejected, rejRef, "default[0] (reject)", "rejects every image")
	})
	t.Run("insecureAcceptAnything accepts unsigned", func(t *testing.T) {
		if err := pull(t, r, v, openRef, openPin); err != nil {
			t.Fatal(err)
		}
		if q := r.requests(".sig"); len(q) != 0 {
			t.Errorf("signatures fetched for an insecureAcceptAnything scope: %v", q)
		}
	})
	t.Run("every requirement must hold", func(t *testing.T) {
		v := imagesig.New(policyOf(t, `{"default":[{"type":"sigstoreSigned","keyData":"`+key.KeyData()+`","signedIdentity":{"type":"matchRepository"}},
			{"type":"sigstoreSigned","keyData":"`+other.KeyData()+`","signedIdentity":{"type":"matchRepository"}}]}`), nil)
		err := pull(t, r, v, signedRef, signedPin)
		refused(t, r, err, imagesig.ErrWrongKey, signedRef, "default[1] (sigstoreSigned)", "does not verify")
	})
	t.Run("either of keyDatas", func(t *testing.T) {
		v := imagesig.New(policyOf(t, `{"default":[{"type":"sigstoreSigned","keyDatas":["`+other.KeyData()+`","`+key.KeyData()+`"],"signedIdentity":{"type":"matchRepository"}}]}`), nil)
		if err := pull(t, r, v, signedRef, signedPin); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("exactRepository", func(t *testing.T) {
		v := imagesig.New(policyOf(t, `{"default":[{"type":"sigstoreSigned","keyData":"`+key.KeyData()+`","signedIdentity":{"type":"exactRepository","dockerRepository":"`+r.host+`/signed/app"}}]}`), nil)
		if err := pull(t, r, v, renamedRef, signedPin); err != nil {
			t.Fatal(err)
		}
	})
}

func mustTag(t *testing.T, ref string) name.Reference {
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

// TestKBSKey: a keyPath kbs:/// key is fetched from a real KBS after attestation (sim SNP
// guest), once; a KBS without the resource refuses the image with ErrKey.
func TestKBSKey(t *testing.T) {
	r := newRegistry(t)
	key := imagesigtest.GenerateKeyPair(t)
	ref, pin := r.push(t, "kbs/app", randomImage(t))
	imagesigtest.Sign(t, key, strings.TrimSuffix(ref, ":v1")+"@"+pin.String())

	k := kbstest.NewKBS(t, true)
	k.Put(t, "default/cosign/pub", key.Pub)
	att, init := kbstest.Guest(t, kbstest.Measurement)
	hub, err := cdh.New(cdh.Config{URL: k.URL(), Attester: att, InitData: init})
	if err != nil {
		t.Fatal(err)
	}
	doc := `{"default":[{"type":"sigstoreSigned","keyPath":"kbs:///default/cosign/pub","signedIdentity":{"type":"matchRepository"}}]}`
	v := imagesig.New(policyOf(t, doc), hub)
	for range 2 {
		if err := pull(t, r, v, ref, pin); err != nil {
			t.Fatal(err)
		}
	}
	if n := k.Count("/kbs/v0/resource/default/cosign/pub"); n != 1 {
		t.Errorf("key fetched %d times, want once", n)
	}

	missing := imagesig.New(policyOf(t, strings.ReplaceAll(doc, "cosign/pub", "cosign/missing")), hub)
	err = pull(t, r, missing, ref, pin)
	refused(t, r, err, imagesig.ErrKey, ref, "default[0] (sigstoreSigned)", "kbs:///default/cosign/missing")

	noKBS := imagesig.New(policyOf(t, doc), nil)
	err = pull(t, r, noKBS, ref, pin)
	refused(t, r, err, imagesig.ErrKey, ref, "default[0]", "needs the KBS")
}

// TestCacheHitVerified: the guest cache is keyed by digest, so an image accepted under one
// name must not be served from the cache under another name its policy rejects.
func TestCacheHitVerified(t *testing.T) {
	r := newRegistry(t)
	img := randomImage(t)
	okRef, pin := r.push(t, "open/app", img)
	badRef, _ := r.push(t, "banned/app", img)
	v := imagesig.New(policyOf(t, `{"default":[{"type":"reject"}],"transports":{"docker":{"`+r.host+`/open":[{"type":"insecureAcceptAnything"}]}}}`), nil)
	cache := t.TempDir()
	opts := imagepull.Options{Digest: pin.String(), CacheDir: cache, InsecureRegistries: []string{r.host}, NoSameOwner: os.Geteuid() != 0, Verifier: v}
	if _, err := imagepull.Pull(context.Background(), okRef, opts); err != nil {
		t.Fatal(err)
	}
	r.reset()
	_, err := imagepull.Pull(context.Background(), badRef, opts)
	refused(t, r, err, imagesig.ErrRejected, badRef, "default[0] (reject)", "rejects every image")
	if got, err := imagepull.Pull(context.Background(), okRef, opts); err != nil || !got.Cached {
		t.Fatalf("second pull of the accepted name: cached %v, err %v", got != nil && got.Cached, err)
	}
}
