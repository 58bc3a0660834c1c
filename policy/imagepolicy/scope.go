package imagepolicy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/distribution/reference"
)

// hostPattern is a registry host[:port] as a scope may name it.
var hostPattern = regexp.MustCompile(`^(\[[0-9a-fA-F:]+\]|[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(:[0-9]+)?$`)

// wildcardPattern is "*.domain", which matches every subdomain of domain (not domain itself).
var wildcardPattern = regexp.MustCompile(`^\*(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)+$`)

// checkDockerScope accepts the docker transport's scope forms, fully spelt (as
// containers/image requires: "docker.io/library/busybox", not "busybox").
func checkDockerScope(scope string) error {
	switch {
	case scope == "":
		return nil
	case strings.HasPrefix(scope, "*"):
		if !wildcardPattern.MatchString(scope) {
			return errors.New("a wildcard scope is *.domain (*.example.com)")
		}
		return nil
	case !strings.Contains(scope, "/"):
		if !hostPattern.MatchString(scope) {
			return errors.New("not a registry host[:port]")
		}
		return nil
	}
	r, err := reference.ParseNamed(scope)
	if err != nil {
		return fmt.Errorf("not a fully spelt repository or reference (registry/namespace/name[:tag|@digest]): %w", err)
	}
	if r.String() != scope {
		return fmt.Errorf("not in canonical form (%q)", r.String())
	}
	return nil
}

// ParseImage parses an image reference as the agent pulls it ("registry/app:v1",
// "registry/app@sha256:...", normalized the way containers/image does: "busybox" is
// "docker.io/library/busybox:latest").
func ParseImage(ref string) (reference.Named, error) {
	r, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	return reference.TagNameOnly(r), nil
}

// Lookup returns the rule for image (from ParseImage) pinned to digest pin ("sha256:..."):
// the requirements of the most specific docker scope that matches, in containers/image's
// order (the reference as given, then repo@pin, the repository, each enclosing namespace,
// the host, wildcard domains from the closest, the transport's "" scope), else "default".
func (p *Policy) Lookup(image reference.Named, pin string) Rule {
	for _, s := range candidateScopes(image, pin) {
		if reqs, ok := p.Docker[s]; ok {
			return Rule{Scope: fmt.Sprintf("transports.docker[%q]", s), Requirements: reqs}
		}
	}
	return Rule{Scope: "default", Requirements: p.Default}
}

func candidateScopes(image reference.Named, pin string) []string {
	var c []string
	if !reference.IsNameOnly(image) {
		c = append(c, image.String())
	}
	name := image.Name()
	if pin != "" {
		c = append(c, name+"@"+pin)
	}
	for s := name; ; {
		c = append(c, s)
		i := strings.LastIndex(s, "/")
		if i < 0 {
			break
		}
		s = s[:i]
	}
	host := reference.Domain(image)
	if !strings.Contains(host, ":") {
		for d := host; ; {
			i := strings.Index(d, ".")
			if i < 0 {
				break
			}
			d = d[i+1:]
			c = append(c, "*."+d)
		}
	}
	return append(c, "")
}
