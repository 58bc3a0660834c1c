// Package deps pins the modules that the packages being written need, so that parallel work
// does not race on go.mod. It is removed once every module here is imported for real.
package deps

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/go-jose/go-jose/v4"
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/google/go-sev-guest/verify"
	_ "github.com/google/go-tdx-guest/verify"
	_ "github.com/open-policy-agent/opa/v1/rego"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "sigs.k8s.io/yaml"
)
