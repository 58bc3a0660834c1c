package launch

import (
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/veil-runtime/veil/policy/initdata"
)

// Settings are the agent's own settings, from the initdata document's veil.toml entry
// (initdata.KeyAgent), so that the TEE measures them with the policy:
//
//	[image]
//	insecure_registries = ["10.88.77.1:5000"]
//
// Without the entry every setting has its zero value. The host has no other way to set them.
type Settings struct {
	Image ImageSettings `toml:"image"`
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
	return s, nil
}

// documentSettings returns the settings of doc (zero without a veil.toml entry).
func documentSettings(doc *initdata.Document) (Settings, error) {
	text, ok := doc.Data[initdata.KeyAgent]
	if !ok {
		return Settings{}, nil
	}
	return ParseSettings(text)
}
