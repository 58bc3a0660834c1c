package genpolicy_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/genpolicy"
	"github.com/veil-runtime/veil/policy/policytest"
)

const sealedPod = `apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    io.veil.sealed-env: "DB_PASSWORD"
    io.veil.sealed-volumes: "certs"
spec:
  containers:
  - name: web
    image: ${REG}/web:1
    env:
    - {name: API_KEY, value: "sealed.aGVhZGVy.cGF5bG9hZA.c2ln"}
    - name: DB_PASSWORD
      valueFrom: {secretKeyRef: {name: db, key: password}}
    - {name: LOG, value: debug}
    volumeMounts:
    - {name: certs, mountPath: /etc/certs}
    - {name: data, mountPath: /data}
  volumes:
  - {name: certs, secret: {secretName: certs}}
  - {name: data, emptyDir: {}}
`

// TestSealedEnv: a literal sealed value and a secretKeyRef named in io.veil.sealed-env are
// recorded as sealed; the policy admits the sealed values and refuses a plaintext in either.
func TestSealedEnv(t *testing.T) {
	f := newFixture(t)
	res, err := f.generate(t, sealedPod, genpolicy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var web = res.Workloads[0].Data.Containers[0]
	if !slices.Equal(web.SealedEnv, []string{"API_KEY", "DB_PASSWORD"}) {
		t.Fatalf("sealed_env %q", web.SealedEnv)
	}
	if !slices.Equal(web.SealedMounts, []string{"/etc/certs"}) {
		t.Fatalf("sealed_mounts %q", web.SealedMounts)
	}
	e, err := policy.New(res.Workloads[0].Policy)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := specWithout(web, "/etc/certs")
	c.EmptyDirs = map[string]string{"/data": "data"}
	base := slices.DeleteFunc(slices.Clone(c.Env), func(e string) bool { return strings.HasPrefix(e, "DB_PASSWORD=") })
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"DB_PASSWORD=sealed.x.y.z"}, ""},
		{[]string{"DB_PASSWORD=plaintext"}, "DB_PASSWORD must carry a sealed secret"},
	} {
		c.Env = append(slices.Clone(base), tc.env...)
		d, err := e.Judge(ctx, "CreateContainer", policytest.CreateContainer("c1", policytest.Spec(c)))
		if err != nil {
			t.Fatal(err)
		}
		if (tc.want == "") != d.Allow || !strings.Contains(d.Reason, tc.want) {
			t.Fatalf("%q: %+v, want %q", tc.env, d, tc.want)
		}
		if m, _ := d.Obligations["sealed_mounts"].([]any); d.Allow && (len(m) != 1 || m[0] != "/etc/certs") {
			t.Fatalf("obligations %v", d.Obligations)
		}
	}
	c.Env = slices.DeleteFunc(append(slices.Clone(base), "DB_PASSWORD=sealed.x.y.z"), func(e string) bool { return strings.HasPrefix(e, "API_KEY=") })
	c.Env = append(c.Env, "API_KEY=plaintext")
	if d, _ := e.Judge(ctx, "CreateContainer", policytest.CreateContainer("c1", policytest.Spec(c))); d.Allow || !strings.Contains(d.Reason, "API_KEY must carry a sealed secret") {
		t.Fatalf("plaintext API_KEY: %+v", d)
	}
}

func TestSealedEnvErrors(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct{ from, to, want string }{
		{`"DB_PASSWORD"`, `"DB_PASSWORD,NOPE"`, "no container declares env NOPE"},
		{`"DB_PASSWORD"`, `"DB_PASSWORD,,LOG"`, "is not a name"},
		{`"DB_PASSWORD"`, `"LOG"`, "env LOG: named in annotation io.veil.sealed-env, but its value is not a sealed secret"},
		{`"certs"`, `"certs,nope"`, "annotation io.veil.sealed-volumes: no container mounts volume nope"},
	} {
		_, err := f.generate(t, strings.Replace(sealedPod, tc.from, tc.to, 1), genpolicy.Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.to, err, tc.want)
		}
	}
}
