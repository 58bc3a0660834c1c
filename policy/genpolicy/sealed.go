package genpolicy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/veil-runtime/veil/kbs-client/sealed"
	"github.com/veil-runtime/veil/policy/policies"
)

// SealedEnvAnnotation is the pod annotation that names, comma-separated, the environment
// variables that must carry a sealed secret (docs/sealed-secrets.md): typically variables
// set from a secretKeyRef, whose value genpolicy cannot know. A variable whose value the pod
// writes as "sealed...." is sealed without being named here.
const SealedEnvAnnotation = "io.veil.sealed-env"

// SealedVolumesAnnotation is the pod annotation that names, comma-separated, the volumes
// (spec.volumes names) whose every file must be a sealed secret: the agent refuses a
// container where the host put another file there (the policy's obligation sealed_mounts).
const SealedVolumesAnnotation = "io.veil.sealed-volumes"

// sealedEnvNames reads SealedEnvAnnotation of a pod template.
func sealedEnvNames(tmpl map[string]any) ([]string, error) {
	return annotationList(tmpl, SealedEnvAnnotation)
}

// annotationList reads a comma-separated list of names from a pod template's annotation.
func annotationList(tmpl map[string]any, key string) ([]string, error) {
	md, _ := tmpl["metadata"].(map[string]any)
	ann, _ := md["annotations"].(map[string]any)
	raw, ok := ann[key]
	if !ok {
		return nil, nil
	}
	text, ok := raw.(string)
	if !ok {
		return nil, fmt.Errorf("annotation %s: not a string", key)
	}
	var names []string
	for _, n := range strings.Split(text, ",") {
		n = strings.TrimSpace(n)
		if n == "" || strings.ContainsAny(n, "= \t") {
			return nil, fmt.Errorf("annotation %s: %q is not a name (want NAME1,NAME2)", key, n)
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names, nil
}

// sealEnv fills the entry's SealedEnv: the variables of c that the annotation names, and
// those the pod writes sealed. A variable the annotation names with a plain literal value is
// an error (the policy would refuse every start).
func sealEnv(entry *policies.Container, c *container, annotated []string) error {
	for _, e := range c.Env {
		marked := slices.Contains(annotated, e.Name)
		literalSealed := e.ValueFrom == nil && strings.HasPrefix(e.Value, sealed.Prefix)
		if marked && e.ValueFrom == nil && !literalSealed {
			return fmt.Errorf("env %s: named in annotation %s, but its value is not a sealed secret (%s...)",
				e.Name, SealedEnvAnnotation, sealed.Prefix)
		}
		if (marked || literalSealed) && !slices.Contains(entry.SealedEnv, e.Name) {
			entry.SealedEnv = append(entry.SealedEnv, e.Name)
		}
	}
	return nil
}

// checkSealedAnnotation refuses a name of the annotation that no container declares (a typo
// would leave the variable unprotected).
func checkSealedAnnotation(annotated []string, all []container) error {
	for _, n := range annotated {
		found := false
		for _, c := range all {
			found = found || slices.ContainsFunc(c.Env, func(e envVar) bool { return e.Name == n })
		}
		if !found {
			return fmt.Errorf("annotation %s: no container declares env %s", SealedEnvAnnotation, n)
		}
	}
	return nil
}

// sealMounts fills the entry's SealedMounts: the mount paths of c's volumes that the
// annotation names.
func sealMounts(entry *policies.Container, c *container, volumes []string) {
	for _, vm := range c.VolumeMounts {
		if slices.Contains(volumes, vm.Name) && !slices.Contains(entry.SealedMounts, vm.MountPath) {
			entry.SealedMounts = append(entry.SealedMounts, vm.MountPath)
		}
	}
}

// checkSealedVolumes refuses a volume of the annotation that no container mounts.
func checkSealedVolumes(volumes []string, all []container) error {
	for _, n := range volumes {
		found := false
		for _, c := range all {
			found = found || slices.ContainsFunc(c.VolumeMounts, func(v volumeMount) bool { return v.Name == n })
		}
		if !found {
			return fmt.Errorf("annotation %s: no container mounts volume %s", SealedVolumesAnnotation, n)
		}
	}
	return nil
}
