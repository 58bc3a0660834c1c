// Package cli is the command line of veil-kbs-client: attest to a KBS and print the token's
// claims, fetch a resource, the administrator's commands (store a resource, set the
// policies), and the sealing of secrets (kbs-client/sealed). cmd/veil-kbs-client is a thin main around Main.
package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/initdata"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// Usage is the command's help.
const Usage = `usage: veil-kbs-client --url URL [flags] COMMAND [ARGS]

guest commands (attest with --tee):
  attest                                   print the attestation token's claims (JSON)
  get-resource kbs:///REPO/TYPE/TAG        print the resource's bytes

administrator commands (sign with --admin-key):
  set-resource kbs:///REPO/TYPE/TAG FILE   store FILE as the resource
  set-resource-policy FILE                 replace the Rego resource policy
  get-resource-policy                      print the resource policy
  set-attestation-policy [--id ID] FILE    replace the Rego appraisal policy (id "default")
  bind-repository REPO [DIGEST|FILE...]    let only guests launched with these initdata (hex
                                           digests, or initdata TOML files) read REPO under the
                                           default resource policy; none: unbind
  get-repository-binding REPO              print the initdata digests bound to REPO

` + sealUsage + `
flags:
`

// globals are the flags before the command.
type globals struct {
	url, cacert, keyType, initdata, adminKey string
	tee, simAuthority, simTEE, simMeasure    string
	timeout                                  time.Duration
}

func (g *globals) flags(fs *flag.FlagSet) {
	fs.StringVar(&g.url, "url", "", "KBS base URL, e.g. http://127.0.0.1:8080 (required)")
	fs.StringVar(&g.cacert, "cacert", "", "PEM CA certificates that sign the KBS's TLS certificate")
	fs.StringVar(&g.tee, "tee", "", "attester: snp, tdx (this guest's TEE) or sim (simulated, needs --sim-authority)")
	fs.StringVar(&g.keyType, "key-type", "ec", "ephemeral key: ec (P-256) or rsa")
	fs.StringVar(&g.initdata, "initdata", "", "initdata TOML file sent with the evidence (and, for sim, its digest is the host data)")
	fs.StringVar(&g.simAuthority, "sim-authority", "", "sim authority file (sim-authority.pem) that signs simulated evidence")
	fs.StringVar(&g.simTEE, "sim-tee", "snp", "evidence format of the simulated TEE: snp or tdx")
	fs.StringVar(&g.simMeasure, "sim-measurement", "", "hex launch measurement (48 bytes) of the simulated guest")
	fs.StringVar(&g.adminKey, "admin-key", "", "administrator Ed25519 private key (PEM) for administrator commands")
	fs.DurationVar(&g.timeout, "timeout", time.Minute, "overall time limit, retries included")
}

// Main runs the command line and returns the exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("veil-kbs-client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, Usage); fs.PrintDefaults() }
	var g globals
	g.flags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 || (g.url == "" && !isSealCommand(fs.Arg(0))) {
		fs.Usage()
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	if err := run(ctx, &g, fs.Args(), stdout); err != nil {
		fmt.Fprintln(stderr, "veil-kbs-client:", err)
		var ke *kbsclient.Error
		if errors.As(err, &ke) {
			return 3 // the KBS refused
		}
		return 1
	}
	return 0
}

func run(ctx context.Context, g *globals, args []string, stdout io.Writer) error {
	cmd, rest := args[0], args[1:]
	if isSealCommand(cmd) {
		return sealCommand(ctx, g, cmd, rest, stdout)
	}
	hc, err := g.httpClient()
	if err != nil {
		return err
	}
	switch cmd {
	case "attest", "get-resource":
		return guestCommand(ctx, g, hc, cmd, rest, stdout)
	case "set-resource", "set-resource-policy", "get-resource-policy", "set-attestation-policy",
		"bind-repository", "get-repository-binding":
		return adminCommand(ctx, g, hc, cmd, rest, stdout)
	default:
		return fmt.Errorf("unknown command %q (see --help)", cmd)
	}
}

func (g *globals) httpClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if g.cacert != "" {
		pem, err := os.ReadFile(g.cacert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate", g.cacert)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

func guestCommand(ctx context.Context, g *globals, hc *http.Client, cmd string, args []string, stdout io.Writer) error {
	att, init, err := g.attester()
	if err != nil {
		return err
	}
	opts := kbsclient.Options{HTTPClient: hc, InitData: init, KeyType: kbsclient.KeyEC}
	switch g.keyType {
	case "ec":
	case "rsa":
		opts.KeyType = kbsclient.KeyRSA
	default:
		return fmt.Errorf("--key-type %q: want ec or rsa", g.keyType)
	}
	cl, err := kbsclient.New(g.url, att, opts)
	if err != nil {
		return err
	}
	if cmd == "attest" {
		if len(args) != 0 {
			return errors.New("attest takes no arguments")
		}
		tok, err := cl.Attest(ctx)
		if err != nil {
			return err
		}
		out, err := json.MarshalIndent(tok.Claims, "", "  ")
		if err != nil {
			return fmt.Errorf("print claims: %w", err)
		}
		_, err = fmt.Fprintf(stdout, "%s\n", out)
		return err
	}
	if len(args) != 1 {
		return errors.New("get-resource takes one kbs:///REPO/TYPE/TAG URI")
	}
	data, err := cl.GetResource(ctx, args[0])
	if err != nil {
		return err
	}
	_, err = stdout.Write(data)
	return err
}

func (g *globals) initData() (*protocol.InitData, error) {
	if g.initdata == "" {
		return nil, nil
	}
	body, err := os.ReadFile(g.initdata)
	if err != nil {
		return nil, fmt.Errorf("--initdata: %w", err)
	}
	// The KBS and the agent refuse a document that initdata.Parse refuses: say so before
	// attesting.
	if _, err := initdata.Parse(body); err != nil {
		return nil, fmt.Errorf("--initdata %s: %w", g.initdata, err)
	}
	return &protocol.InitData{Format: initdata.Format, Body: string(body)}, nil
}
