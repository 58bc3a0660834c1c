// Package kbs holds the Kubernetes manifests of the Key Broker Service (veil-kbs): a kustomize
// base (base/: Deployment, Service, PersistentVolumeClaim in veil-system), the production
// kustomization (kustomization.yaml: HTTPS) and the overlays hostpath (data in a host
// directory), replicas (several replicas sharing the keys of one Secret) and sim-http (tests
// only). It has no code: its tests check that the manifests parse and that the Deployment
// passes veil-kbs flags it accepts, with files where the volumes put them, the keys of one
// Secret in every replica when there are several, probes on its health endpoint and a
// locked-down security context. See docs/images.md.
package kbs
