package launch

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/initdata"
)

// Settings are the agent's own settings, from the initdata document's veil.toml entry
// (initdata.KeyAgent), so that the TEE measures them with the policy:
//
//	[image]
//	insecure_registries = ["10.88.77.1:5000"]
//
//	[kbs]
//	url = "https://kbs.example:8080"
//	ca_cert = """
//	-----BEGIN CERTIFICATE-----
//	...
//	"""
//
// Without the entry every setting has its zero value. The host has no other way to set them.
type Settings struct {
	Image ImageSettings `toml:"image"`
	KBS   KBSSettings   `toml:"kbs"`
}

// KBSSettings name the Key Broker Service the guest attests to for its secrets (agent/cdh):
// the keys of encrypted image layers. They are measured with the rest of the initdata, so the
// host cannot send the guest to another KBS.
type KBSSettings struct {
	// URL is the KBS's base URL, http(s)://host[:port][/path]; empty means no KBS (encrypted
	// layers are then refused).
	URL string `toml:"url"`
	// CACert is PEM text: the certificates a https KBS's certificate must chain to, instead
	// of the guest's system roots. The text itself is in initdata, so it is measured too.
	CACert string `toml:"ca_cert"`
	// SealedSecretKeys are the kbs:/// URIs of the keys that may sign sealed secrets (the
	// JWS kid; agent/unseal); empty means any kbs:/// key this KBS serves.
	SealedSecretKeys []string `toml:"sealed_secret_keys"`
}

// ImageSettings configure the image pulls of the agent (image_guest_pull storages).
type ImageSettings struct {
	// InsecureRegistries are the registries (host or host:port) the agent may reach over
	// plain HTTP; every other registry needs HTTPS.
	InsecureRegistries []string `toml:"insecure_registries"`
}

// ParseSettings reads the veil.toml entry of an initdata document. Unknown keys are errors,
// so that a misspelt setting is not silently ignored.
func ParseSettings(text string) (Settings, error) {
	var s Settings
	md, err := toml.Decode(text, &s)
	if err != nil {
		return Settings{}, fmt.Errorf("initdata: %s: %w", initdata.KeyAgent, err)
	}
	if undec := md.Undecoded(); len(undec) > 0 {
		return Settings{}, fmt.Errorf("initdata: %s: unknown key %q", initdata.KeyAgent, undec[0].String())
	}
	for _, r := range s.Image.InsecureRegistries {
		if r == "" || strings.ContainsAny(r, "/ \t") {
			return Settings{}, fmt.Errorf("initdata: %s: image.insecure_registries: %q is not host or host:port", initdata.KeyAgent, r)
		}
	}
	if err := s.KBS.validate(); err != nil {
		return Settings{}, fmt.Errorf("initdata: %s: %w", initdata.KeyAgent, err)
	}
	return s, nil
}

// validate checks the URL and the CA certificates.
func (k *KBSSettings) validate() error {
	for _, key := range k.SealedSecretKeys {
		if _, err := protocol.ParseResourceURI(key); err != nil {
			return fmt.Errorf("kbs.sealed_secret_keys: %w", err)
		}
	}
	if k.URL == "" {
		if k.CACert != "" || len(k.SealedSecretKeys) > 0 {
			return fmt.Errorf("kbs.ca_cert or kbs.sealed_secret_keys is set but kbs.url is not")
		}
		return nil
	}
	u, err := url.Parse(k.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("kbs.url %q: want http(s)://host[:port][/path]", k.URL)
	}
	if k.CACert == "" {
		return nil
	}
	if u.Scheme != "https" {
		return fmt.Errorf("kbs.ca_cert is set but kbs.url %q is not https", k.URL)
	}
	if _, err := ParseCACert(k.CACert); err != nil {
		return fmt.Errorf("kbs.ca_cert: %w", err)
	}
	return nil
}

// ParseCACert reads PEM certificates (at least one, nothing else) into a pool.
func ParseCACert(text string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	rest := []byte(text)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q: only CERTIFICATE blocks are allowed", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, fmt.Errorf("text that is not PEM after %d certificate(s)", n)
	}
	if n == 0 {
		return nil, fmt.Errorf("no PEM certificate")
	}
	return pool, nil
}

// documentSettings returns the settings of doc (zero without a veil.toml entry).
func documentSettings(doc *initdata.Document) (Settings, error) {
	text, ok := doc.Data[initdata.KeyAgent]
	if !ok {
		return Settings{}, nil
	}
	return ParseSettings(text)
}
