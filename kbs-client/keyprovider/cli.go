package keyprovider

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"google.golang.org/grpc"

	"github.com/veil-runtime/veil/kbs-client/adminclient"
)

// DefaultKEKDir is where the command keeps KEKs unless --kek-dir says otherwise.
const DefaultKEKDir = "/var/lib/veil/keyprovider"

// maxRequest bounds a protocol request read from stdin.
const maxRequest = 1 << 20

// Main is veil-keyprovider: without --grpc it answers one protocol request from stdin on
// stdout (ocicrypt's "cmd" form); with --grpc ADDR it serves the gRPC form until ctx ends.
// It returns the exit status.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("veil-keyprovider", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", DefaultName, "the provider's name in the ocicrypt configuration (provider:NAME:…)")
	kekDir := fs.String("kek-dir", envOr("VEIL_KEK_DIR", DefaultKEKDir), "where this machine keeps the key-encryption keys it made ($VEIL_KEK_DIR)")
	kbsURL := fs.String("kbs", os.Getenv("VEIL_KBS_URL"), "veil-kbs to create new key-encryption keys in, http(s)://host:port ($VEIL_KBS_URL); none: air-gapped")
	adminKey := fs.String("admin-key", os.Getenv("VEIL_KBS_ADMIN_KEY"), "the KBS administrator's Ed25519 private key, PEM, with --kbs ($VEIL_KBS_ADMIN_KEY)")
	cacert := fs.String("cacert", os.Getenv("VEIL_KBS_CACERT"), "PEM CA certificates that sign the KBS's TLS certificate ($VEIL_KBS_CACERT)")
	grpcAddr := fs.String("grpc", "", "serve ocicrypt's gRPC KeyProviderService on this address (host:port or unix:PATH)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: veil-keyprovider [flags]   (ocicrypt key provider: see docs/keyprovider.md)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "veil-keyprovider:", err)
		return 1
	}
	cfg := Config{Name: *name, KEKDir: *kekDir, Logf: func(f string, a ...any) { fmt.Fprintf(stderr, f+"\n", a...) }}
	if (*kbsURL == "") != (*adminKey == "") {
		return fail(errors.New("--kbs and --admin-key go together"))
	}
	if *kbsURL != "" {
		hc, err := httpClient(*cacert)
		if err != nil {
			return fail(err)
		}
		kbs, err := adminclient.Load(*kbsURL, *adminKey, hc)
		if err != nil {
			return fail(err)
		}
		cfg.KBS = kbs
	}
	p, err := New(cfg)
	if err != nil {
		return fail(err)
	}
	if *grpcAddr != "" {
		return serveGRPC(ctx, p, *grpcAddr, stderr)
	}
	in, err := io.ReadAll(io.LimitReader(stdin, maxRequest+1))
	if err != nil {
		return fail(err)
	}
	if len(in) > maxRequest {
		return fail(fmt.Errorf("request larger than %d bytes", maxRequest))
	}
	out, err := p.Handle(ctx, in)
	if err != nil {
		return fail(err)
	}
	if _, err := stdout.Write(out); err != nil {
		return fail(err)
	}
	return 0
}

func serveGRPC(ctx context.Context, p *Provider, addr string, stderr io.Writer) int {
	network, address := "tcp", addr
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, address = "unix", path
		_ = os.Remove(path)
	}
	l, err := net.Listen(network, address)
	if err != nil {
		fmt.Fprintln(stderr, "veil-keyprovider:", err)
		return 1
	}
	s := grpc.NewServer()
	RegisterGRPC(s, p)
	go func() {
		<-ctx.Done()
		s.GracefulStop()
	}()
	fmt.Fprintf(stderr, "veil-keyprovider: serving ocicrypt's KeyProviderService on %s\n", l.Addr())
	if err := s.Serve(l); err != nil {
		fmt.Fprintln(stderr, "veil-keyprovider:", err)
		return 1
	}
	return 0
}

// envOr is the environment variable's value, or def. skopeo runs the provider command with its
// own environment, so the shipped ocicrypt configuration needs no per-user arguments.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func httpClient(cacert string) (*http.Client, error) {
	if cacert == "" {
		return http.DefaultClient, nil
	}
	pem, err := os.ReadFile(cacert)
	if err != nil {
		return nil, fmt.Errorf("--cacert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--cacert %s: no PEM certificate", cacert)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}
