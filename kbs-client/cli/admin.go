package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/veil-runtime/veil/attestation/kbs/admin"
	"github.com/veil-runtime/veil/attestation/kbs/protocol"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// adminCommand runs one administrator command, signed with --admin-key.
func adminCommand(ctx context.Context, g *globals, hc *http.Client, cmd string, args []string, stdout io.Writer) error {
	if g.adminKey == "" {
		return fmt.Errorf("%s needs --admin-key (the administrator's Ed25519 private key)", cmd)
	}
	key, err := admin.LoadPrivateKey(g.adminKey)
	if err != nil {
		return err
	}
	tok, err := admin.Token(key, admin.DefaultTokenTTL)
	if err != nil {
		return err
	}
	base := strings.TrimSuffix(g.url, "/") + protocol.PathPrefix
	call := func(method, path string, body []byte) ([]byte, error) {
		return adminCall(ctx, hc, tok, cmd, method, base+path, body)
	}
	switch cmd {
	case "set-resource":
		if len(args) != 2 {
			return errors.New("set-resource takes kbs:///REPO/TYPE/TAG and FILE")
		}
		p, err := protocol.ParseResourceURI(args[0])
		if err != nil {
			return err
		}
		data, err := os.ReadFile(args[1])
		if err != nil {
			return fmt.Errorf("set-resource: %w", err)
		}
		_, err = call(http.MethodPost, "/resource/"+p.String(), data)
		return err
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

// adminCall sends one administrator request; a refusal is a *kbsclient.Error.
func adminCall(ctx context.Context, hc *http.Client, tok, op, method, url string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, kbsclient.NewError(op, resp.StatusCode, out)
	}
	return out, nil
}
