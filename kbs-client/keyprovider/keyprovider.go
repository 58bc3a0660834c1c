// Package keyprovider is veil-keyprovider: an ocicrypt key provider (the protocol of
// OCICRYPT_KEYPROVIDER_CONFIG, spoken by skopeo, buildah and containerd's imgcrypt, as a
// command or as a gRPC service) that wraps each encrypted layer's key under a
// key-encryption key (KEK) held by veil-kbs, in Confidential Containers' annotation packet
// (kbs-client/keywrap), so that Veil's guest (and CoCo's data hub) unwrap it after
// attestation.
//
// A layer key is wrapped for one kid, the KEK's kbs:///repo/type/tag URI, given as the
// provider's parameter: `--encryption-key provider:veil:kbs:///default/image-kek/app`, or in
// coco-keyprovider's form `provider:veil:keyid=kbs:///…::keypath=/path/to/kek`. The KEK is
// the keypath file when one is given; otherwise the one this machine keeps for that kid in
// its KEK directory; otherwise a new random one, created in the KBS through its
// administrator API (create-only: a KBS that already holds that kid is never overwritten)
// and then kept in the KEK directory (0600) for the image's other layers and later images.
// Without a KBS (air-gapped) the new KEK is only kept, for the administrator to upload.
// Nothing else ever sees a KEK, and none is logged.
package keyprovider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	ockp "github.com/containers/ocicrypt/keywrap/keyprovider"

	"github.com/veil-runtime/veil/kbs-client/keywrap"
)

// DefaultName is the provider name of Veil's shipped ocicrypt configuration.
const DefaultName = "veil"

// KBS creates resources in veil-kbs (*adminclient.Client).
type KBS interface {
	CreateResource(ctx context.Context, uri string, data []byte) error
}

// Config configures a Provider.
type Config struct {
	// Name is the provider's name in the ocicrypt configuration: its parameters are
	// EncryptConfig.Parameters[Name] (DefaultName when empty).
	Name string
	// KEKDir keeps the KEKs this machine made or was given: KEKDir/<repo>/<type>/<tag>.
	KEKDir string
	// KBS, when set, receives every KEK made here (create-only). Nil: air-gapped.
	KBS KBS
	// Logf reports what was done (never a key); nil is silent.
	Logf func(format string, args ...any)
}

// Provider answers ocicrypt's key wrap and unwrap requests.
type Provider struct {
	name string
	keks *kekStore
	kbs  KBS
	logf func(string, ...any)
}

// New returns a Provider.
func New(c Config) (*Provider, error) {
	if c.KEKDir == "" {
		return nil, errors.New("keyprovider: no KEK directory")
	}
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return &Provider{name: c.Name, keks: &kekStore{dir: c.KEKDir}, kbs: c.KBS, logf: c.Logf}, nil
}

// Handle answers one protocol request: the JSON of ocicrypt's
// KeyProviderKeyWrapProtocolInput, as the command reads it on stdin and the gRPC service
// receives it. The answer is the JSON of KeyProviderKeyWrapProtocolOutput.
func (p *Provider) Handle(ctx context.Context, input []byte) ([]byte, error) {
	var in ockp.KeyProviderKeyWrapProtocolInput
	dec := json.NewDecoder(bytes.NewReader(input))
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("keyprovider: the request is not ocicrypt's key provider protocol: %w", err)
	}
	var out ockp.KeyProviderKeyWrapProtocolOutput
	switch in.Operation {
	case ockp.OpKeyWrap:
		if in.KeyWrapParams.Ec == nil {
			return nil, errors.New("keyprovider: keywrap without an encryption config (ec)")
		}
		ann, err := p.Wrap(ctx, in.KeyWrapParams.Ec.Parameters[p.name], in.KeyWrapParams.OptsData)
		if err != nil {
			return nil, err
		}
		out.KeyWrapResults.Annotation = ann
	case ockp.OpKeyUnwrap:
		var params [][]byte
		if in.KeyUnwrapParams.Dc != nil {
			params = in.KeyUnwrapParams.Dc.Parameters[p.name]
		}
		opts, err := p.Unwrap(params, in.KeyUnwrapParams.Annotation)
		if err != nil {
			return nil, err
		}
		out.KeyUnwrapResults.OptsData = opts
	default:
		return nil, fmt.Errorf("keyprovider: unknown operation %q (want %s or %s)", in.Operation, ockp.OpKeyWrap, ockp.OpKeyUnwrap)
	}
	return json.Marshal(out)
}

// Wrap seals a layer's private options (optsData) for the one kid its parameters name, and
// returns the annotation packet.
func (p *Provider) Wrap(ctx context.Context, params [][]byte, optsData []byte) ([]byte, error) {
	if len(params) != 1 {
		return nil, fmt.Errorf("keyprovider: %d parameters for provider %q: give one key, --encryption-key provider:%s:kbs:///<repository>/<type>/<tag>", len(params), p.name, p.name)
	}
	par, err := parseParam(string(params[0]))
	if err != nil {
		return nil, err
	}
	kek, err := p.wrapKEK(ctx, par)
	if err != nil {
		return nil, err
	}
	defer clear(kek)
	return keywrap.Seal(kek, par.kid, optsData)
}

// wrapKEK finds or makes the KEK to wrap for.
func (p *Provider) wrapKEK(ctx context.Context, par param) ([]byte, error) {
	if par.keyPath != "" {
		return readKEK(par.keyPath)
	}
	kek, made, err := p.keks.getOrMake(par.kid, func(kek []byte) error {
		if p.kbs == nil {
			return nil
		}
		return p.kbs.CreateResource(ctx, par.kid, kek)
	})
	if err != nil {
		return nil, err
	}
	switch {
	case made && p.kbs != nil:
		p.logf("veil-keyprovider: new key-encryption key %s created in the KBS and kept in %s", par.kid, p.keks.path(par.kid))
	case made:
		p.logf("veil-keyprovider: new key-encryption key %s kept in %s (no KBS configured: upload it with veil-kbs-client admin set-resource %s %s)",
			par.kid, p.keks.path(par.kid), par.kid, p.keks.path(par.kid))
	}
	return kek, nil
}

// Unwrap opens an annotation packet with the KEK of its kid: the keypath of a parameter that
// names that kid, or the one kept in the KEK directory.
func (p *Provider) Unwrap(params [][]byte, annotation []byte) ([]byte, error) {
	pkt, err := keywrap.Parse(annotation)
	if err != nil {
		return nil, err
	}
	uri := pkt.KEKURI()
	var kek []byte
	for _, raw := range params {
		if par, err := parseParam(string(raw)); err == nil && par.kid == uri && par.keyPath != "" {
			if kek, err = readKEK(par.keyPath); err != nil {
				return nil, err
			}
		}
	}
	if kek == nil {
		if kek, err = p.keks.get(uri); err != nil {
			return nil, err
		}
	}
	defer clear(kek)
	return pkt.Open(kek)
}

// param is one provider parameter.
type param struct {
	kid     string // kbs:///repo/type/tag
	keyPath string // a KEK file to use, or ""
}

// parseParam reads "kbs:///r/t/g" or coco-keyprovider's "keyid=kbs:///r/t/g::keypath=FILE"
// (with an optional "algorithm=A256GCM").
func parseParam(s string) (param, error) {
	var par param
	if !strings.Contains(s, "=") {
		par.kid = s
	} else {
		for _, kv := range strings.Split(s, "::") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "keyid":
				par.kid = v
			case "keypath":
				par.keyPath = v
			case "algorithm":
				if v != keywrap.WrapA256GCM {
					return par, fmt.Errorf("keyprovider: algorithm %q: only %s is supported", v, keywrap.WrapA256GCM)
				}
			default:
				return par, fmt.Errorf("keyprovider: unknown parameter %q in %q (want keyid=kbs:///…[::keypath=FILE][::algorithm=A256GCM])", k, s)
			}
		}
	}
	uri, err := keywrap.KidURI(par.kid)
	if err != nil {
		return par, fmt.Errorf("keyprovider: key %q: want kbs:///<repository>/<type>/<tag>: %w", par.kid, err)
	}
	if uri != par.kid {
		return par, fmt.Errorf("keyprovider: key %q names a KBS address: write kbs:///<repository>/<type>/<tag> (the guest asks the KBS of its measured configuration)", par.kid)
	}
	return par, nil
}
