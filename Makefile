# Veil: build, image, demo and tests. `make demo` and `make test` are the two entry points the
# README documents; both install what they need (scripts/install-deps.sh) and skip what is done.

SHELL := /bin/bash
export PATH := $(CURDIR)/bin/tools:/usr/local/go/bin:$(PATH)

GO       ?= go
BIN      := $(CURDIR)/bin
IMAGE    ?= $(CURDIR)/build/image
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/veil-runtime/veil/agent/server.AgentVersion=$(VERSION) \
            -X github.com/veil-runtime/veil/shim/manager.Version=$(VERSION)

# The guest image's kernel and mkfs packages and the guest binaries' Go toolchain are pinned
# by this lock file (docs/guest-image.md); `make image-lock` moves it.
IMAGE_LOCK := guest-image/image.lock

HOST_CMDS := veil-image veil-ctl containerd-shim-veil-v2 veil-kbs veil-kbs-client veil-genpolicy veil-ociimage veil-deploy veil-keyprovider veil-snapshotter

# Unit tests: everything but the VM suites under tests/ (their helper packages under
# tests/internal are unit-tested too).
UNIT_PKGS = $(shell $(GO) list ./... | grep -v /tests/ ; $(GO) list ./tests/internal/...)

.PHONY: all deps build agent image containerd containerd16 cri-tools kubernetes crane skopeo cosign demo-k8s critest install proto proto-check unit e2e test demo bench fuzz lint clean

all: build

deps:
	@scripts/install-deps.sh

build: deps agent
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(HOST_CMDS))

# veil-init is pid 1 (small, no cgo); veil-agent is the agent it starts. Both are built by
# veil-image binaries, the one place that says how (guest-image/gobuild: -trimpath, the
# commit as version and VCS stamp, the lock's Go toolchain), so that `veil-image verify`
# rebuilds them the same way.
agent: deps
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/veil-image ./cmd/veil-image
	$(BIN)/veil-image binaries --src $(CURDIR) --out $(BIN) --lock $(IMAGE_LOCK)

# The guest image (kernel, initrd, manifest), cached by the digest of its inputs, with the
# packages of the lock file. KERNEL=debian (the default: Debian's cloud kernel package) or
# KERNEL=veil (Veil's own minimal kernel, built from the locked source package with
# guest-image/kernel/veil.config: tens of minutes on 2 cores the first time, then cached in
# /var/cache/veil/image/veil-kernel). `make image-veil` builds the veil-kernel image into
# build/image-veil.
KERNEL ?= debian
IMAGE_VEIL ?= $(CURDIR)/build/image-veil
image: build
	$(BIN)/veil-image build --kernel $(KERNEL) --lock $(IMAGE_LOCK) --init $(BIN)/veil-init --agent $(BIN)/veil-agent --out $(IMAGE)

.PHONY: image-veil
image-veil: build
	$(BIN)/veil-image build --kernel veil --lock $(IMAGE_LOCK) --init $(BIN)/veil-init --agent $(BIN)/veil-agent --out $(IMAGE_VEIL)

# Moves the lock file to the newest 6.12 cloud kernel (and busybox-static) in the archive;
# review and commit the change.
.PHONY: image-lock repro-check
image-lock: deps
	$(GO) run ./cmd/veil-image lock --update --lock $(IMAGE_LOCK)

# The guest image is reproducible: a clone of HEAD in another directory builds its image,
# then `veil-image verify` rebuilds it in a third clone with a fresh HOME, GOPATH and
# GOCACHE (modules from the module cache, nothing fetched) and compares every file byte for
# byte (scripts/repro-check.sh; docs/testing.md has its cost).
repro-check: agent
	@VEIL_IMAGE_TOOL=$(BIN)/veil-image scripts/repro-check.sh

# OCI images of the KBS and the node installer (docs/images.md), reproducible and without
# Docker: static binaries (CGO_ENABLED=0, -trimpath) packed by veil-ociimage into
# build/images/NAME/ (an OCI layout, for crane push or skopeo) and build/images/NAME.oci.tar
# (ctr -n k8s.io images import). Names veil-kbs:dev and veil-installer:dev; with VERSION=v1
# REGISTRY=registry.example/veil, registry.example/veil/veil-kbs:v1. SOURCE_DATE_EPOCH
# (default 0) is the time stamped on every file.
IMAGES        := $(CURDIR)/build/images
IMAGES_TAG    := $(if $(filter command line environment,$(origin VERSION)),$(VERSION),dev)
IMAGES_PREFIX := $(if $(REGISTRY),$(patsubst %/,%,$(REGISTRY))/)
IMAGES_GO      = CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS) -s -w' -o $(IMAGES)/bin/
IMAGES_LABELS  = --label org.opencontainers.image.source=https://github.com/veil-runtime/veil \
	--label org.opencontainers.image.revision=$(shell git rev-parse HEAD 2>/dev/null) \
	--label org.opencontainers.image.version=$(VERSION)
CA_BUNDLE     := /etc/ssl/certs/ca-certificates.crt

.PHONY: images
images: build image
	@[ -r $(CA_BUNDLE) ] || { echo "images: $(CA_BUNDLE) missing (apt-get install ca-certificates)" >&2; exit 1; }
	$(IMAGES_GO) ./cmd/veil-kbs
	$(BIN)/veil-ociimage --name $(IMAGES_PREFIX)veil-kbs:$(IMAGES_TAG) \
		--layout $(IMAGES)/veil-kbs --archive $(IMAGES)/veil-kbs.oci.tar \
		--file usr/local/bin/veil-kbs=$(IMAGES)/bin/veil-kbs --dir tmp=1777 \
		--file etc/ssl/certs/ca-certificates.crt=$(CA_BUNDLE) \
		--entrypoint /usr/local/bin/veil-kbs --user 65532:65532 \
		$(IMAGES_LABELS) --label org.opencontainers.image.title=veil-kbs
	@[ -d cmd/veil-deploy ] || { echo "images: veil-kbs is built, but veil-installer needs the node" \
		"installer cmd/veil-deploy, which is not in this tree yet" >&2; exit 1; }
	$(IMAGES_GO) ./cmd/veil-deploy ./cmd/containerd-shim-veil-v2 ./cmd/veil-snapshotter
	rm -rf $(IMAGES)/payload
	$(IMAGES)/bin/veil-deploy payload --out $(IMAGES)/payload --shim $(IMAGES)/bin/containerd-shim-veil-v2 \
		--snapshotter $(IMAGES)/bin/veil-snapshotter --image $(IMAGE) --config shim/config/configuration.toml
	$(BIN)/veil-ociimage --name $(IMAGES_PREFIX)veil-installer:$(IMAGES_TAG) \
		--layout $(IMAGES)/veil-installer --archive $(IMAGES)/veil-installer.oci.tar \
		--file usr/local/bin/veil-deploy=$(IMAGES)/bin/veil-deploy --dir tmp=1777 \
		--tree opt/veil-payload=$(IMAGES)/payload --entrypoint /usr/local/bin/veil-deploy \
		$(IMAGES_LABELS) --label org.opencontainers.image.title=veil-installer

# containerd 2.4.2, ctr and the runc shim, built from the Go module proxy into bin/tools: the
# shim's tests and the demo start their own containerd in a temporary root.
containerd: deps
	@scripts/containerd.sh

# Debian's containerd 1.6 and its ctr, unpacked (not installed) into bin/tools/containerd-1.6,
# for the shim's compatibility test.
containerd16: deps
	@scripts/containerd16.sh

# crictl v1.37.0 into bin/tools, for the CRI suite (tests/cri).
cri-tools: deps
	@scripts/cri-tools.sh

# Kubernetes v1.34.4 (kubelet, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl)
# and etcd v3.6.6, built from the Go module proxy into $(VEIL_CACHE)/kubernetes and
# $(VEIL_CACHE)/etcd (default /var/cache/veil), for the test cluster of tests/k8s
# (docs/kubernetes-cluster.md). ~20 min of compiling once; skipped when they are there.
kubernetes: deps
	@scripts/kubernetes.sh

# skopeo 1.9.3 from Debian's source with ocicrypt's key-provider protocol (Debian's binary lacks
# it), cached in /var/cache/veil/skopeo: the client that encrypts images through veil-keyprovider.
skopeo: deps
	@scripts/skopeo.sh

# crane (go-containerregistry, a tool of go.mod) into bin/tools: `make demo` serves its images
# from `crane registry serve` on loopback, where veil-genpolicy and containerd's CRI find them.
crane: deps
	@mkdir -p $(BIN)/tools
	$(GO) build -o $(BIN)/tools/crane github.com/google/go-containerregistry/cmd/crane

# cosign v2.6.5, built from the Go module proxy once into $(VEIL_CACHE)/cosign/v2.6.5 (default
# /var/cache/veil): the image signature tests sign their images with it (docs/imagesig.md).
cosign: deps
	@scripts/cosign.sh

# The shim, the guest image and the default configuration in the standard places.
install: build image
	@scripts/install.sh

proto: deps
	protoc -I agent/api --go_out=paths=source_relative:agent/api \
		--go-ttrpc_out=paths=source_relative:agent/api agent/api/agent.proto

# Fails when the committed generated code differs from what `make proto` makes.
proto-check: deps
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	protoc -I agent/api --go_out=paths=source_relative:$$tmp \
		--go-ttrpc_out=paths=source_relative:$$tmp agent/api/agent.proto && \
	for f in agent.pb.go agent_ttrpc.pb.go; do \
		diff -q $$tmp/$$f agent/api/$$f >/dev/null || { echo "agent/api/$$f is stale: run make proto"; exit 1; }; \
	done && echo "proto-check: generated code is up to date"

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The hypervisor's boot tests use the guest image's kernel, so unit builds the (cached) image;
# the installer's and the image builder's tests run containerd 2.4 and 1.6 (cached builds).
unit: lint image containerd containerd16 skopeo cosign
	VEIL_TEST_KERNEL=$(IMAGE)/vmlinuz $(GO) test -race -count=1 $(UNIT_PKGS)

# The suites that boot real QEMU VMs from the guest image: the agent directly (tests/e2e),
# through containerd and the shim (tests/shim), through CRI with crictl (tests/cri), then, on
# their own, through a real single-node Kubernetes (tests/k8s, with the manifests rendered by
# its kubectl).
e2e: image containerd containerd16 cri-tools kubernetes cosign
	VEIL_IMAGE=$(IMAGE) VEIL_BIN=$(BIN) $(GO) test -tags e2e -count=1 -timeout 40m -v ./tests/e2e/ ./tests/shim/ ./tests/cri/
	VEIL_IMAGE=$(IMAGE) VEIL_BIN=$(BIN) $(GO) test -tags e2e -count=1 -timeout 30m -v ./tests/k8s/ ./deploy/...

# CRI conformance: critest (cri-tools v1.37.0) with the veil handler, then runc; prints both
# counts and the Veil-only failures (docs/cri.md records them). ~15 min on the 2-core CI machine.
# It fails when a suite cannot run; failing conformance tests are reported, not fatal.
critest: image containerd cri-tools
	IMAGE=$(IMAGE) scripts/critest.sh

test: proto-check repro-check critest unit e2e

demo: build image containerd cri-tools crane skopeo cosign
	@scripts/demo.sh

# Veil on a real single-node Kubernetes started on this machine: tests/k8s TestDaemonSet,
# narrated (scripts/demo-k8s.sh). A few minutes, plus `make kubernetes` once.
demo-k8s: image containerd cri-tools kubernetes
	@scripts/demo-k8s.sh

bench: image image-veil containerd cri-tools kubernetes skopeo cosign
	@IMAGE_VEIL=$(IMAGE_VEIL) scripts/bench.sh

# Every fuzz target for FUZZTIME each (default 10s), with its executions per second
# (docs/testing.md).
fuzz: deps
	@scripts/fuzz.sh

clean:
	rm -rf $(BIN) build
