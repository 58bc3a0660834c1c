package containerdcfg

import (
	"strings"
	"testing"
)

func TestSetImports(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		list      []string
		version   int
		want      string
	}{
		{name: "after version", src: "version = 3\nroot = \"/r\"\n", list: []string{"/d.toml"},
			want: "version = 3\nimports = [\"/d.toml\"]\nroot = \"/r\"\n"},
		{name: "version with a comment, no newline at the end", src: "version = 2 # v2", list: []string{"/d.toml"},
			want: "version = 2 # v2\nimports = [\"/d.toml\"]\n"},
		{name: "no version: at the top", src: "# c\nroot = \"/r\"\n[grpc]\n  address = \"/s\"\n", list: []string{"/d.toml"},
			want: "imports = [\"/d.toml\"]\n# c\nroot = \"/r\"\n[grpc]\n  address = \"/s\"\n"},
		{name: "empty file gets a version", src: "# nothing\n", list: []string{"/d.toml"}, version: 3,
			want: "version = 3\nimports = [\"/d.toml\"]\n# nothing\n"},
		{name: "replace in place, comment kept", src: "version = 3\nimports = ['/a.toml'] # mine\n", list: []string{"/a.toml", "/d.toml"},
			want: "version = 3\nimports = [\"/a.toml\", \"/d.toml\"] # mine\n"},
		{name: "multiline", src: fixtureMultiline,
			list: []string{"/etc/containerd/a.toml", "/etc/containerd/b#.toml", "/d.toml"},
			want: strings.Replace(fixtureMultiline, "[\n  \"/etc/containerd/a.toml\", # the first ] one\n  '/etc/containerd/b#.toml',\n]",
				`["/etc/containerd/a.toml", "/etc/containerd/b#.toml", "/d.toml"]`, 1)},
		{name: "remove", src: "version = 3\nimports = [\"/d.toml\", \"/x.toml\"]\n", list: []string{"/x.toml"},
			want: "version = 3\nimports = [\"/x.toml\"]\n"},
		{name: "remove the last", src: "version = 3\nimports = [\"/d.toml\"]\n", list: nil,
			want: "version = 3\nimports = []\n"},
		{name: "imports in a table are not the top-level key", src: "version = 3\n[x]\nimports = [1]\n", list: []string{"/d.toml"},
			want: "version = 3\nimports = [\"/d.toml\"]\n[x]\nimports = [1]\n"},
		{name: "tricky values before", src: "a = \"\"\"x\n]\"\"\"\nb = { c = [1, 2], d = 'e]' }\nimports = []\n",
			list: []string{"/d.toml"}, want: "a = \"\"\"x\n]\"\"\"\nb = { c = [1, 2], d = 'e]' }\nimports = [\"/d.toml\"]\n"},
		{name: "quotes escaped", src: "version = 3\n", list: []string{`/we"ird\path`},
			want: "version = 3\nimports = [\"/we\\\"ird\\\\path\"]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := setImports([]byte(tc.src), tc.list, tc.version)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestSetImportsRefuses(t *testing.T) {
	for _, src := range []string{
		"version = 3\nimports = [\"/a]\n",
		"version = 3\nimports = [\"/a\"\n",
	} {
		if got, err := setImports([]byte(src), []string{"/d.toml"}, 0); err == nil {
			t.Errorf("setImports(%q) = %q, want an error", src, got)
		}
	}
}
