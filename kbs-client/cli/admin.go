package cli

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/veil-runtime/veil/initdata"
	"github.com/veil-runtime/veil/kbs-client/adminclient"
)

// adminClient is the administrator's client of --url, signing with --admin-key.
func (g *globals) adminClient(cmd string, hc *http.Client) (*adminclient.Client, error) {
	if g.adminKey == "" {
		return nil, fmt.Errorf("%s needs --admin-key (the administrator's Ed25519 private key)", cmd)
	}
	return adminclient.Load(g.url, g.adminKey, hc)
}

// adminCommand runs one administrator command, signed with --admin-key.
func adminCommand(ctx context.Context, g *globals, hc *http.Client, cmd string, args []string, stdout io.Writer) error {
	c, err := g.adminClient(cmd, hc)
	if err != nil {
		return err
	}
	call := func(method, path string, body []byte) ([]byte, error) {
		return c.Call(ctx, cmd, method, path, body, nil)
	}
	switch cmd {
	case "set-resource":
		if len(args) != 2 {
			return errors.New("set-resource takes kbs:///REPO/TYPE/TAG and FILE")
		}
		data, err := os.ReadFile(args[1])
		if err != nil {
			return fmt.Errorf("set-resource: %w", err)
		}
		defer clear(data)
		return c.SetResource(ctx, args[0], data)
	case "bind-repository":
		if len(args) < 1 {
			return errors.New("bind-repository takes REPO and the initdata (hex digests or TOML files) of its guests")
		}
		digests, err := initDataDigests(args[1:])
		if err != nil {
			return err
		}
		return c.BindRepository(ctx, args[0], digests)
	case "get-repository-binding":
		if len(args) != 1 {
			return errors.New("get-repository-binding takes REPO")
		}
		digests, err := c.RepositoryBinding(ctx, args[0])
		if err != nil {
			return err
		}
		for _, d := range digests {
			fmt.Fprintln(stdout, d)
		}
		return nil
	case "get-resource-policy":
		out, err := call(http.MethodGet, "/resource-policy", nil)
		if err != nil {
			return err
		}
		src, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(string(out)))
		if err != nil {
			return fmt.Errorf("get-resource-policy: reply is not base64url: %w", err)
		}
		_, err = stdout.Write(src)
		return err
	default:
		return setPolicy(cmd, args, call)
	}
}

func setPolicy(cmd string, args []string, call func(method, path string, body []byte) ([]byte, error)) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	id := fs.String("id", "default", "attestation policy id")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%s takes one policy FILE", cmd)
	}
	src, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	req := map[string]string{"policy": base64.RawURLEncoding.EncodeToString(src)}
	path := "/resource-policy"
	if cmd == "set-attestation-policy" {
		req["type"], req["policy_id"], path = "rego", *id, "/attestation-policy"
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	_, err = call(http.MethodPost, path, body)
	return err
}

// initDataDigests turns each argument into an initdata digest: a hex digest as it is, or the
// digest of an initdata TOML file (computed as the launch does).
func initDataDigests(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		if _, err := hex.DecodeString(a); err == nil && len(a) >= 64 {
			out = append(out, a)
			continue
		}
		body, err := os.ReadFile(a)
		if err != nil {
			return nil, fmt.Errorf("bind-repository: %q is neither a hex digest nor a readable initdata file: %w", a, err)
		}
		doc, err := initdata.Parse(body)
		if err != nil {
			return nil, fmt.Errorf("bind-repository: initdata %s: %w", a, err)
		}
		out = append(out, hex.EncodeToString(doc.Digest()))
	}
	return out, nil
}
