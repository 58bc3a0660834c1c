package containerdcfg

import (
	"os"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/veil-runtime/veil/deploy/installer/internal/fakehost"
)

func TestApplyRevert(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		major         int
		dropIn        string
		editsMain     bool
	}{
		{name: "v3", content: fixtureV3, major: 2, dropIn: DefaultDropIn, editsMain: true},
		{name: "v2 on 1.6", content: fixtureV2, major: 1, dropIn: DefaultDropIn, editsMain: true},
		{name: "none", major: 2, dropIn: DefaultDropIn, editsMain: true},
		{name: "glob", content: fixtureGlob, major: 2, dropIn: DefaultDropIn},
		{name: "drop-in dir", content: fixtureDropInDir, major: 1, dropIn: "/etc/containerd/config.d/veil.toml"},
		{name: "multiline", content: fixtureMultiline, major: 1, dropIn: DefaultDropIn, editsMain: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, tc.content)
			var prev *State
			for round := 1; round <= 2; round++ {
				c, err := Read(h, "", tc.major)
				if err != nil {
					t.Fatal(err)
				}
				st, changed, err := c.Apply(spec, prev)
				if err != nil {
					t.Fatal(err)
				}
				if changed != (round == 1) {
					t.Errorf("round %d: changed = %v", round, changed)
				}
				if st.DropIn != tc.dropIn || fakehost.ReadFile(t, h, tc.dropIn) == "" {
					t.Errorf("round %d: drop-in %s (state says %s) missing", round, tc.dropIn, st.DropIn)
				}
				main := readMain(t, h)
				var doc map[string]any
				if _, err := toml.Decode(main, &doc); err != nil {
					t.Fatalf("round %d: config.toml does not decode: %v\n%s", round, err, main)
				}
				n := strings.Count(main, tc.dropIn)
				switch {
				case tc.editsMain && n != 1:
					t.Errorf("round %d: config.toml names %s %d times:\n%s", round, tc.dropIn, n, main)
				case !tc.editsMain && main != tc.content:
					t.Errorf("round %d: config.toml changed though its imports cover the drop-in:\n%s", round, main)
				}
				if tc.content != "" && tc.editsMain && fakehost.ReadFile(t, h, DefaultConfig+BackupSuffix) != tc.content {
					t.Errorf("round %d: the backup is not the original", round)
				}
				prev = &st
			}
			changed, notes, err := Revert(h, prev)
			if err != nil || !changed || len(notes) != 0 {
				t.Fatalf("Revert: changed %v, notes %v, err %v", changed, notes, err)
			}
			if got := readMain(t, h); got != tc.content {
				t.Errorf("config.toml after Revert:\n%q\nwant the original:\n%q", got, tc.content)
			}
			for _, p := range []string{tc.dropIn, DefaultConfig + BackupSuffix} {
				if _, err := os.Stat(h.Path(p)); !os.IsNotExist(err) {
					t.Errorf("%s still there after Revert", p)
				}
			}
			if tc.name == "none" || tc.name == "v3" {
				if _, err := os.Stat(h.Path("/etc/containerd/conf.d")); !os.IsNotExist(err) {
					t.Error("the drop-in directory Apply made is still there")
				}
			}
		})
	}
}

// The file changed since the install: Revert keeps the change and the backup, and takes out
// only the import.
func TestRevertChangedSince(t *testing.T) {
	h := newHost(t, fixtureV3)
	c, _ := Read(h, "", 2)
	st, _, err := c.Apply(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	edited := readMain(t, h) + "\n[debug]\n  level = \"debug\"\n"
	fakehost.WriteFile(t, h, DefaultConfig, edited)
	changed, notes, err := Revert(h, &st)
	if err != nil || !changed || len(notes) != 2 {
		t.Fatalf("Revert: changed %v notes %v err %v", changed, notes, err)
	}
	got := readMain(t, h)
	if strings.Contains(got, DefaultDropIn) || !strings.Contains(got, `level = "debug"`) {
		t.Errorf("config.toml after Revert:\n%s", got)
	}
	if fakehost.ReadFile(t, h, DefaultConfig+BackupSuffix) != fixtureV3 {
		t.Error("the backup of the original is gone")
	}
}

// Without a state, Revert removes the default drop-in and any exact import of it: a
// missing import would stop containerd from starting.
func TestRevertWithoutState(t *testing.T) {
	h := newHost(t, "version = 3\nimports = [\"/etc/containerd/conf.d/veil.toml\", \"/etc/x.toml\"]\n")
	fakehost.WriteFile(t, h, DefaultDropIn, "version = 3\n")
	changed, _, err := Revert(h, nil)
	if err != nil || !changed {
		t.Fatalf("Revert: %v %v", changed, err)
	}
	if got := readMain(t, h); got != "version = 3\nimports = [\"/etc/x.toml\"]\n" {
		t.Errorf("config.toml = %q", got)
	}
	if fakehost.ReadFile(t, h, DefaultDropIn) != "" {
		t.Error("drop-in still there")
	}
}

// A second Apply with other handlers rewrites the drop-in only.
func TestApplyOtherHandlers(t *testing.T) {
	h := newHost(t, fixtureV3)
	c, _ := Read(h, "", 2)
	st, _, err := c.Apply(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	main := readMain(t, h)
	c, _ = Read(h, "", 2)
	one := Spec{ShimPath: spec.ShimPath, Runtimes: spec.Runtimes[:1]}
	st2, changed, err := c.Apply(one, &st)
	if err != nil || !changed {
		t.Fatalf("Apply: changed %v err %v", changed, err)
	}
	if readMain(t, h) != main || st2.Backup != st.Backup || st2.Written != st.Written {
		t.Error("the second Apply touched config.toml or forgot the backup")
	}
	if strings.Contains(fakehost.ReadFile(t, h, DefaultDropIn), "veil-sim") {
		t.Error("the drop-in still declares veil-sim")
	}
}
