package kbs_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// TestCreateOnly: an administrator's write with "If-None-Match: *" creates a resource once;
// a second one is refused with 412 and leaves the first value; a plain write still replaces.
func TestCreateOnly(t *testing.T) {
	env := kbstest.NewServer(t, nil)
	url := env.URL() + "/kbs/v0/resource/default/image-kek/app"
	hdr := map[string]string{"Authorization": "Bearer " + env.AdminToken(t), "If-None-Match": "*"}
	if r := do(t, "POST", url, []byte("first"), hdr); r.status != http.StatusOK {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	r := do(t, "POST", url, []byte("second"), hdr)
	if r.status != http.StatusPreconditionFailed || !strings.Contains(string(r.body), "already exists") {
		t.Fatalf("second create: %d %s, want 412 already exists", r.status, r.body)
	}
	p := protocol.ResourcePath{Repository: "default", Type: "image-kek", Tag: "app"}
	if got, err := env.Store.Get(context.Background(), p); err != nil || !bytes.Equal(got, []byte("first")) {
		t.Fatalf("after the refused create: %q, %v", got, err)
	}
	// Without an administrator's token nothing is written, and the answer says nothing of it.
	if r := do(t, "POST", url, []byte("third"), map[string]string{"If-None-Match": "*"}); r.status != http.StatusUnauthorized {
		t.Fatalf("unauthenticated create: %d %s", r.status, r.body)
	}
	putResource(t, env, "default/image-kek/app", []byte("replaced"))
	if got, _ := env.Store.Get(context.Background(), p); !bytes.Equal(got, []byte("replaced")) {
		t.Fatalf("plain write: %q", got)
	}
}
