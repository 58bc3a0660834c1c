// Package nodelabel sets and removes the installer's labels on its own Kubernetes node, with
// the pod's service account, through a JSON merge patch of /api/v1/nodes/<name>: a small
// REST client on net/http instead of client-go.
//
// RBAC cannot limit a DaemonSet's pods to their own node (a ClusterRole grants patch on all
// nodes), so the client guards itself: it patches only the node it was made for (NODE_NAME)
// and only labels under Prefix.
package nodelabel

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Prefix starts every label the installer may touch.
const Prefix = "veil.dev/"

// ServiceAccountDir holds the pod's token and the cluster's CA.
const ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// Client patches the labels of one node.
type Client struct {
	// Server is the API server's base URL (https://host:port).
	Server string
	// TokenFile is read on every request (projected tokens are rotated).
	TokenFile string
	Node      string
	HTTP      *http.Client
}

// InCluster makes a client from the pod's environment: KUBERNETES_SERVICE_HOST and
// KUBERNETES_SERVICE_PORT, and the service account's token and ca.crt in saDir ("" for
// ServiceAccountDir).
func InCluster(node, saDir string) (*Client, error) {
	h, p := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if h == "" || p == "" {
		return nil, fmt.Errorf("not in a Kubernetes pod: KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT is unset")
	}
	if saDir == "" {
		saDir = ServiceAccountDir
	}
	return New("https://"+net.JoinHostPort(h, p), filepath.Join(saDir, "token"), filepath.Join(saDir, "ca.crt"), node)
}

// New makes a client for server that trusts the CA certificates in caFile.
func New(server, tokenFile, caFile, node string) (*Client, error) {
	if node == "" {
		return nil, fmt.Errorf("node labels: no node name (set NODE_NAME from the downward API, or --node-name)")
	}
	if strings.ContainsAny(node, "/?#%") {
		return nil, fmt.Errorf("node labels: node name %q is not a node name", node)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("node labels: the cluster's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("node labels: %s holds no PEM certificate", caFile)
	}
	if _, err := os.Stat(tokenFile); err != nil {
		return nil, fmt.Errorf("node labels: the service account token: %w", err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return &Client{Server: strings.TrimSuffix(server, "/"), TokenFile: tokenFile, Node: node,
		HTTP: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// Set sets labels (every key under Prefix) on the node; other labels are untouched.
func (c *Client) Set(ctx context.Context, labels map[string]string) error {
	patch := map[string]any{}
	for k, v := range labels {
		patch[k] = v
	}
	return c.patch(ctx, patch)
}

// Remove removes the labels keys (every key under Prefix) from the node.
func (c *Client) Remove(ctx context.Context, keys []string) error {
	patch := map[string]any{}
	for _, k := range keys {
		patch[k] = nil // a merge patch deletes a key set to null
	}
	return c.patch(ctx, patch)
}

func (c *Client) patch(ctx context.Context, labels map[string]any) error {
	for k := range labels {
		if !strings.HasPrefix(k, Prefix) || len(k) == len(Prefix) {
			return fmt.Errorf("node labels: refusing to touch label %q: only %s* labels are the installer's", k, Prefix)
		}
	}
	if len(labels) == 0 {
		return nil
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
	if err != nil {
		return fmt.Errorf("node labels: %w", err)
	}
	tok, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return fmt.Errorf("node labels: the service account token: %w", err)
	}
	u := c.Server + "/api/v1/nodes/" + url.PathEscape(c.Node)
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("node labels: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	req.Header.Set("Content-Type", "application/merge-patch+json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("node labels: PATCH node %s: %w", c.Node, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("node labels: PATCH node %s: %s: %s", c.Node, resp.Status, apiMessage(msg))
	}
	return nil
}

// apiMessage is the message of a Kubernetes Status body, else the body's start.
func apiMessage(body []byte) string {
	var st struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		return st.Message
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
