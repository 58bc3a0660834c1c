package guestimage

import (
	"debug/buildinfo"
	"fmt"
	"path/filepath"

	"github.com/veil-runtime/veil/guest-image/gobuild"
	"github.com/veil-runtime/veil/guest-image/manifest"
)

// readSource describes the source of /init and the agent (agent "" when there is none): the
// commit from the build record gobuild.Build wrote next to them (used only when the binaries'
// SHA-256 are the ones it records), the toolchain and build settings from the Go build
// information in the binaries. It returns nil when there is no such record (binaries built
// otherwise, such as a benchmark's trivial init), and an error when the binaries are not the
// ones the record describes or come from different toolchains.
func readSource(initPath string, initData []byte, agentPath string, agentData []byte) (*manifest.Source, error) {
	rec, err := gobuild.ReadRecord(filepath.Dir(initPath))
	if err != nil || rec == nil {
		return nil, err
	}
	check := func(path string, data []byte) error {
		name := filepath.Base(path)
		if want, ok := rec.SHA256[name]; !ok || want != sha256Hex(data) {
			return fmt.Errorf("%s is not the %s that %s records (sha256 %s, recorded %q): rebuild with make agent",
				path, name, filepath.Join(filepath.Dir(initPath), gobuild.RecordFile), sha256Hex(data), want)
		}
		return nil
	}
	if err := check(initPath, initData); err != nil {
		return nil, err
	}
	ini, err := buildinfo.ReadFile(initPath)
	if err != nil {
		return nil, fmt.Errorf("/init %s: no Go build information: %w", initPath, err)
	}
	src := &manifest.Source{Commit: rec.Commit, Modified: rec.Modified, GoVersion: ini.GoVersion, CC: rec.CC, Init: settings(ini)}
	if agentPath == "" {
		return src, nil
	}
	if filepath.Dir(agentPath) != filepath.Dir(initPath) {
		return nil, fmt.Errorf("the agent %s is not next to /init %s and its build record", agentPath, initPath)
	}
	if err := check(agentPath, agentData); err != nil {
		return nil, err
	}
	ag, err := buildinfo.ReadFile(agentPath)
	if err != nil {
		return nil, fmt.Errorf("agent %s: no Go build information: %w", agentPath, err)
	}
	if ag.GoVersion != ini.GoVersion {
		return nil, fmt.Errorf("/init was built with %s, the agent with %s: build both with make agent", ini.GoVersion, ag.GoVersion)
	}
	src.Agent = settings(ag)
	return src, nil
}

func settings(bi *buildinfo.BuildInfo) []string {
	out := make([]string, 0, len(bi.Settings)+1)
	out = append(out, "path="+bi.Path)
	for _, kv := range bi.Settings {
		out = append(out, kv.Key+"="+kv.Value)
	}
	return out
}
