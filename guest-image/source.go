package guestimage

import (
	"debug/buildinfo"
	"fmt"

	"github.com/veil-runtime/veil/guest-image/manifest"
)

// readSource reads the Go build information of /init and the agent (agent "" when there is
// none): the commit, the toolchain and the build settings. It returns nil when init carries
// no VCS stamp (a binary built outside a checkout, such as a benchmark's trivial init), and an
// error when the two binaries come from different commits or toolchains.
func readSource(initPath, agentPath string) (*manifest.Source, error) {
	ini, err := buildinfo.ReadFile(initPath)
	if err != nil {
		return nil, nil // not a Go binary, or built without module information: nothing to record
	}
	src := sourceOf(ini)
	if src.Commit == "" {
		return nil, nil
	}
	src.Init = settings(ini)
	if agentPath == "" || agentPath == initPath {
		return src, nil
	}
	ag, err := buildinfo.ReadFile(agentPath)
	if err != nil {
		return nil, fmt.Errorf("agent %s: no Go build information (%w), but /init has: build both with make agent", agentPath, err)
	}
	if a := sourceOf(ag); a.Commit != src.Commit || a.Modified != src.Modified || a.GoVersion != src.GoVersion {
		return nil, fmt.Errorf("/init (%s) is commit %s (modified %t) built with %s, the agent (%s) commit %s (modified %t) built with %s: build both from one checkout (make agent)",
			initPath, src.Commit, src.Modified, src.GoVersion, agentPath, a.Commit, a.Modified, a.GoVersion)
	}
	src.Agent = settings(ag)
	return src, nil
}

func sourceOf(bi *buildinfo.BuildInfo) *manifest.Source {
	s := &manifest.Source{GoVersion: bi.GoVersion}
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			s.Commit = kv.Value
		case "vcs.time":
			s.CommitTime = kv.Value
		case "vcs.modified":
			s.Modified = kv.Value == "true"
		}
	}
	return s
}

func settings(bi *buildinfo.BuildInfo) []string {
	out := make([]string, 0, len(bi.Settings)+1)
	out = append(out, "path="+bi.Path)
	for _, kv := range bi.Settings {
		out = append(out, kv.Key+"="+kv.Value)
	}
	return out
}
