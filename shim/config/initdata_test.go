package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/initdata"
)

func TestInitData(t *testing.T) {
	doc := []byte("version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"policy.rego\" = \"package agent_policy\"\n")
	ann, err := initdata.EncodeAnnotation(doc)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "initdata.toml")
	fileDoc := []byte("version = \"0.1.0\"\nalgorithm = \"sha384\"\n")
	if err := os.WriteFile(file, fileDoc, 0o644); err != nil {
		t.Fatal(err)
	}
	withFile := Default()
	withFile.Runtime.InitData = file
	missing := Default()
	missing.Runtime.InitData = filepath.Join(t.TempDir(), "missing.toml")
	for _, tc := range []struct {
		name        string
		cfg         *Config
		annotations map[string]string
		want        []byte
		wantErr     string
	}{
		{"none", Default(), nil, nil, ""},
		{"annotation", Default(), map[string]string{initdata.Annotation: ann}, doc, ""},
		{"annotation wins over the file", withFile, map[string]string{initdata.Annotation: ann}, doc, ""},
		{"config file", withFile, nil, fileDoc, ""},
		{"bad annotation", Default(), map[string]string{initdata.Annotation: "%%%"}, nil, "annotation " + initdata.Annotation},
		{"missing file", missing, nil, nil, "runtime.initdata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.InitData(tc.annotations)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || string(got) != string(tc.want) {
				t.Fatalf("InitData = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
