package kbstest

// A real KBS on loopback for the tests of the guest's confidential data hub (agent/cdh) and
// of the packages that use it (agent/imagepull, tests/cri): the KBS server of attestation/kbs
// with the built-in attestation service (verifier, appraisal, EAR tokens), trusting a sim
// authority, and sim SNP guests of that authority. Only tests import it: the agent never does.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/veil-runtime/veil/attestation/appraisal"
	"github.com/veil-runtime/veil/attestation/kbs"
	"github.com/veil-runtime/veil/attestation/kbs/builtin"
	"github.com/veil-runtime/veil/attestation/kbs/store"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/token"
	"github.com/veil-runtime/veil/attestation/verifier"
	"github.com/veil-runtime/veil/initdata"
)

// Measurement is the launch measurement the KBS's reference values accept.
var Measurement = [48]byte{0x5e, 0xc7, 0x3e}

// InitData is the initdata document the guests are launched with (its digest is their
// HOST_DATA) and send with their evidence.
const InitData = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"package agent_policy\"\n"

var authority struct {
	once sync.Once
	a    *sim.Authority
	err  error
}

// Authority is one sim authority per test binary (its keys are slow to make).
func Authority(tb testing.TB) *sim.Authority {
	tb.Helper()
	authority.once.Do(func() { authority.a, authority.err = sim.NewAuthority(rand.Reader, sim.Options{}) })
	if authority.err != nil {
		tb.Fatal(authority.err)
	}
	return authority.a
}

// KBS is a KBS behind a loopback front end that counts requests per path and can switch to
// another KBS instance (a "restart": new token key, same resources).
type KBS struct {
	Env   *Env
	Front *httptest.Server

	opts    Options
	handler atomic.Pointer[http.Handler]
	mu      sync.Mutex
	counts  map[string]int
}

// NewKBS starts a KBS whose reference values accept sim SNP guests with Measurement. With
// trustSim false, the verifier does not trust the sim authority (every attestation fails).
func NewKBS(tb testing.TB, trustSim bool) *KBS {
	tb.Helper()
	return NewKBSWith(tb, Options{Untrusted: !trustSim})
}

// Options configure NewKBSWith; the zero value is NewKBS(tb, true).
type Options struct {
	// Authority is the sim authority the verifier trusts; nil means Authority(tb). A VM test
	// passes the one its guest image was built with (sim.LoadAuthority).
	Authority *sim.Authority
	// Untrusted makes the verifier trust no sim authority (every attestation fails).
	Untrusted bool
	// Measurements are the launch measurements the reference values accept; nil means
	// Measurement.
	Measurements [][48]byte
	// Addr is the address the front end listens on ("0.0.0.0:0" for a guest on the pod
	// network); "" means loopback.
	Addr string
}

// NewKBSWith starts a KBS configured by o.
func NewKBSWith(tb testing.TB, o Options) *KBS {
	tb.Helper()
	k := &KBS{counts: map[string]int{}, opts: o}
	k.Env = newEnv(tb, o, nil)
	h := http.Handler(k.Env.KBS)
	k.handler.Store(&h)
	k.Front = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		k.counts[r.URL.Path]++
		k.mu.Unlock()
		(*k.handler.Load()).ServeHTTP(w, r)
	}))
	if o.Addr != "" {
		l, err := net.Listen("tcp", o.Addr)
		if err != nil {
			tb.Fatal(err)
		}
		_ = k.Front.Listener.Close()
		k.Front.Listener = l
	}
	k.Front.Start()
	tb.Cleanup(k.Front.Close)
	return k
}

func newEnv(tb testing.TB, o Options, st store.Store) *Env {
	tb.Helper()
	a := o.Authority
	if a == nil {
		a = Authority(tb)
	}
	vc := verifier.Config{}
	if !o.Untrusted {
		vc.SimSNPRoots, vc.SimTDXRoots = a.SNPRoots(), a.TDXRoots()
	}
	v, err := verifier.New(vc)
	if err != nil {
		tb.Fatal(err)
	}
	ms := o.Measurements
	if ms == nil {
		ms = [][48]byte{Measurement}
	}
	snpRef := &appraisal.SNPReference{AllowSimulated: true}
	for _, m := range ms {
		snpRef.Measurements = append(snpRef.Measurements, hex.EncodeToString(m[:]))
	}
	refs := &appraisal.ReferenceValues{SNP: snpRef}
	ap, err := builtin.NewAppraiser(context.Background(), appraisal.DefaultPolicy, refs)
	if err != nil {
		tb.Fatal(err)
	}
	iss, err := token.GenerateIssuer(token.IssuerOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := builtin.New(builtin.Options{Verifier: v, Appraiser: ap, Issuer: iss, Reference: refs})
	if err != nil {
		tb.Fatal(err)
	}
	return NewServer(tb, func(o *kbs.Options) {
		o.Attestation, o.Tokens = svc, svc
		if st != nil {
			o.Resources = st
		}
	})
}

// URL is the front end's base URL (its listening address: 0.0.0.0 for Options.Addr
// "0.0.0.0:0"; see Port).
func (k *KBS) URL() string { return k.Front.URL }

// Port is the front end's TCP port.
func (k *KBS) Port() int { return k.Front.Listener.Addr().(*net.TCPAddr).Port }

// Put stores a resource ("repo/type/tag").
func (k *KBS) Put(tb testing.TB, path string, data []byte) {
	tb.Helper()
	p, err := protocol.ParseResourcePath(path)
	if err != nil {
		tb.Fatal(err)
	}
	if err := k.Env.Store.Put(context.Background(), p, data); err != nil {
		tb.Fatal(err)
	}
}

// Count returns how many requests path ("/kbs/v0/attest", ...) received.
func (k *KBS) Count(path string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.counts[path]
}

// Restart switches the front end to a new KBS instance that shares the resources but has a
// new token key and no sessions: the guest's token and cookie are no longer accepted.
func (k *KBS) Restart(tb testing.TB) {
	tb.Helper()
	env := newEnv(tb, k.opts, k.Env.Store)
	h := http.Handler(env.KBS)
	k.handler.Store(&h)
}

// Guest returns a sim SNP guest of Authority launched with measurement and with InitData's
// digest as its HOST_DATA, and the init-data it sends.
func Guest(tb testing.TB, measurement [48]byte) (*sim.Attester, *protocol.InitData) {
	tb.Helper()
	doc, err := initdata.Parse([]byte(InitData))
	if err != nil {
		tb.Fatal(err)
	}
	l := sim.SNPLaunch{Measurement: measurement}
	copy(l.HostData[:], initdata.SNPHostData(doc.Digest()))
	att, err := sim.NewSNPAttester(Authority(tb), l)
	if err != nil {
		tb.Fatal(err)
	}
	return att, &protocol.InitData{Format: "toml", Body: InitData}
}
