package kbs

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// bindingRepository is the repository named by a repository-binding request's path.
func bindingRepository(r *http.Request) string {
	return strings.TrimPrefix(r.URL.EscapedPath(), protocol.PathPrefix+protocol.RepositoryBindingPath)
}

// handleBindRepository replaces the initdata digests bound to a repository (administrator
// only): under the default resource policy only guests whose measured initdata digest is
// bound to a repository read it (docs/kbs.md, "Tenants").
func (s *Server) handleBindRepository(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	if err := s.opts.Admin.Authorize(r); err != nil {
		return refuse(protocol.AdminAuthAccess, reasonAdmin, err, "bind repository")
	}
	repo := bindingRepository(r)
	body, err := readBody(w, r, s.opts.MaxBodyBytes)
	if err != nil {
		return refuse(protocol.PluginInternalError, reasonTooLarge, err, "bind repository %q", repo)
	}
	var req protocol.RepositoryBinding
	if err := json.Unmarshal(body, &req); err != nil {
		return refuse(protocol.SerdeError, reasonBadRequest, err, "bind repository %q: request body", repo)
	}
	if err := s.opts.Policy.Bind(repo, req.InitData); err != nil {
		return refuse(protocol.InvalidRequestPath, reasonBadRequest, err, "bind repository %q", repo)
	}
	log.G(ctx).WithFields(log.Fields{"repository": repo, "init_data_digests": len(req.InitData)}).
		Info("kbs: repository binding set by the administrator")
	return nil
}

// handleGetRepositoryBinding returns the initdata digests bound to a repository
// (administrator only).
func (s *Server) handleGetRepositoryBinding(_ context.Context, w http.ResponseWriter, r *http.Request) error {
	if err := s.opts.Admin.Authorize(r); err != nil {
		return refuse(protocol.AdminAuthAccess, reasonAdmin, err, "get repository binding")
	}
	digests := s.opts.Policy.Binding(bindingRepository(r))
	if digests == nil {
		digests = []string{}
	}
	return writeJSON(w, protocol.RepositoryBinding{InitData: digests})
}
