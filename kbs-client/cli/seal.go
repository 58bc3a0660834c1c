package cli

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/kbs-client/adminclient"
	"github.com/veil-runtime/veil/kbs-client/sealed"
)

// sealUsage is the help of the sealing commands (docs/sealed-secrets.md).
const sealUsage = `sealed secrets (docs/sealed-secrets.md; no --url needed unless a key is uploaded):
  seal-keygen [--kid URI] KEYFILE          make an EC P-256 signing key (PEM, 0600) and print
                                           its public JWK; with --kid (and --url, --admin-key)
                                           also store the JWK as that resource
  seal vault --key KEYFILE --kid URI RESOURCE_URI
                                           print a sealed value naming the KBS resource
  seal envelope --key KEYFILE --kid URI --kek-id URI (--kek FILE | --new-kek) [FILE|-]
                                           encrypt FILE (or stdin) under a fresh data key
                                           wrapped with the KEK resource; --new-kek makes a
                                           KEK and stores it (needs --url, --admin-key)
`

// stdin is what seal envelope reads without a FILE (a variable for the tests).
var stdin io.Reader = os.Stdin

// isSealCommand: the commands that need no --url by themselves.
func isSealCommand(cmd string) bool { return cmd == "seal" || cmd == "seal-keygen" }

func sealCommand(ctx context.Context, g *globals, cmd string, args []string, stdout io.Writer) error {
	if cmd == "seal-keygen" {
		return sealKeygen(ctx, g, args, stdout)
	}
	if len(args) == 0 || (args[0] != sealed.TypeVault && args[0] != sealed.TypeEnvelope) {
		return errors.New("seal takes a type: seal vault ... or seal envelope ... (see --help)")
	}
	typ := args[0]
	fs := flag.NewFlagSet("seal "+typ, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	keyFile := fs.String("key", "", "signing key file: EC P-256, PEM or JWK (required)")
	kid := fs.String("kid", "", "kbs:/// URI of the public key in the KBS, the JWS kid (required)")
	kekID := fs.String("kek-id", "", "envelope: kbs:/// URI of the key-encryption key")
	kekFile := fs.String("kek", "", "envelope: file of the 32-byte KEK already stored at --kek-id")
	newKEK := fs.Bool("new-kek", false, "envelope: make a new KEK and store it at --kek-id (needs --url and --admin-key)")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("seal %s: %w", typ, err)
	}
	if *keyFile == "" || *kid == "" {
		return fmt.Errorf("seal %s needs --key and --kid", typ)
	}
	raw, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("--key: %w", err)
	}
	key, err := sealed.ParsePrivateKey(raw)
	if err != nil {
		return fmt.Errorf("--key %s: %w", *keyFile, err)
	}
	var s *sealed.Secret
	if typ == sealed.TypeVault {
		if fs.NArg() != 1 || *kekID != "" || *kekFile != "" || *newKEK {
			return errors.New("seal vault takes --key, --kid and one kbs:///REPO/TYPE/TAG resource URI")
		}
		if s, err = sealed.NewVault(fs.Arg(0)); err != nil {
			return err
		}
	} else {
		if s, err = envelope(ctx, g, fs, *kekID, *kekFile, *newKEK, stdin); err != nil {
			return err
		}
	}
	v, err := sealed.Seal(s, key, *kid)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, v)
	return err
}

// envelope reads the plaintext and the KEK (or makes and stores one) and seals an envelope.
func envelope(ctx context.Context, g *globals, fs *flag.FlagSet, kekID, kekFile string, newKEK bool, stdin io.Reader) (*sealed.Secret, error) {
	if kekID == "" || (kekFile == "") == !newKEK {
		return nil, errors.New("seal envelope needs --kek-id and exactly one of --kek FILE and --new-kek")
	}
	if _, err := protocol.ParseResourceURI(kekID); err != nil {
		return nil, fmt.Errorf("--kek-id: %w", err)
	}
	if fs.NArg() > 1 {
		return nil, errors.New("seal envelope takes at most one FILE (default: stdin)")
	}
	in := stdin
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return nil, fmt.Errorf("seal envelope: %w", err)
		}
		defer f.Close()
		in = f
	}
	plain, err := io.ReadAll(io.LimitReader(in, sealed.MaxValue/2+1))
	if err != nil {
		return nil, fmt.Errorf("seal envelope: read the secret: %w", err)
	}
	defer clear(plain)
	if len(plain) > sealed.MaxValue/2 {
		return nil, fmt.Errorf("seal envelope: the secret is more than %d bytes", sealed.MaxValue/2)
	}
	var kek []byte
	if newKEK {
		kek = make([]byte, 32)
		if _, err := rand.Read(kek); err != nil {
			return nil, err
		}
		if err := storeResource(ctx, g, kekID, kek); err != nil {
			return nil, fmt.Errorf("--new-kek: store the KEK at %s: %w", kekID, err)
		}
	} else if kek, err = os.ReadFile(kekFile); err != nil {
		return nil, fmt.Errorf("--kek: %w", err)
	}
	defer clear(kek)
	return sealed.NewEnvelope(plain, kek, kekID, nil)
}

// storeResource creates the resource at uri through the administrator's API, create-only: a
// KEK or a verification key that sealed values already depend on is never replaced (replace
// one deliberately with set-resource).
func storeResource(ctx context.Context, g *globals, uri string, data []byte) error {
	if g.url == "" || g.adminKey == "" {
		return errors.New("storing a resource needs --url and --admin-key")
	}
	hc, err := g.httpClient()
	if err != nil {
		return err
	}
	c, err := g.adminClient("seal", hc)
	if err != nil {
		return err
	}
	if err := c.CreateResource(ctx, uri, data); errors.Is(err, adminclient.ErrExists) {
		return fmt.Errorf("%w: choose another URI, or replace it deliberately with set-resource", err)
	} else if err != nil {
		return err
	}
	return nil
}

// sealKeygen makes a signing key and prints (and optionally stores) its public JWK.
func sealKeygen(ctx context.Context, g *globals, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("seal-keygen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	kid := fs.String("kid", "", "store the public JWK at this kbs:/// URI (needs --url and --admin-key)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("seal-keygen: %w", err)
	}
	if fs.NArg() != 1 {
		return errors.New("seal-keygen takes one KEYFILE to create")
	}
	if *kid != "" {
		if _, err := protocol.ParseResourceURI(*kid); err != nil {
			return fmt.Errorf("--kid: %w", err)
		}
	}
	key, err := sealed.GenerateKey()
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(fs.Arg(0), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("seal-keygen: %w", err)
	}
	err = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("seal-keygen: %w", err)
	}
	jwk, err := sealed.PublicJWK(&key.PublicKey)
	if err != nil {
		return err
	}
	if *kid != "" {
		if err := storeResource(ctx, g, *kid, jwk); err != nil {
			return fmt.Errorf("seal-keygen: store the public key at %s: %w", *kid, err)
		}
	}
	_, err = fmt.Fprintf(stdout, "%s\n", jwk)
	return err
}
