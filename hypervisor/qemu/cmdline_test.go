package qemu

import (
	"bytes"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/hypervisor"
)

func baseConfig() hypervisor.Config {
	return hypervisor.Config{
		ID:       "pod1",
		StateDir: "/run/veil/vm/pod1",
		Kernel:   "/opt/veil/vmlinuz",
		Initrd:   "/opt/veil/initrd.img",
	}
}

var tcg = Host{Accel: hypervisor.AccelTCG}

// joined renders args as one line, for substring checks.
func joined(args []string) string { return strings.Join(args, " ") }

func TestCommandLine(t *testing.T) {
	hostData := bytes.Repeat([]byte{0xab}, 32)
	tests := []struct {
		name   string
		cfg    func(*hypervisor.Config)
		host   Host
		want   []string // substrings of the joined command line
		absent []string
	}{
		{
			name: "default q35 tcg virtio-serial",
			host: tcg,
			want: []string{
				"-machine q35 ", "-accel tcg,tb-size=64 ", "-cpu max", "-m 512M", "-smp 1",
				"-nodefaults -no-user-config -nographic -no-reboot",
				"-chardev socket,id=qmp,server=on,wait=off,path=/run/veil/vm/pod1/qmp.sock -mon chardev=qmp,mode=control",
				"-chardev file,id=console,path=/run/veil/vm/pod1/console.log -serial chardev:console",
				"-kernel /opt/veil/vmlinuz -initrd /opt/veil/initrd.img -append console=ttyS0 panic=-1",
				"-device virtio-serial-pci,id=vser0 ",
				"-chardev socket,id=agent,server=on,wait=off,path=/run/veil/vm/pod1/agent.sock",
				"-device virtserialport,bus=vser0.0,chardev=agent,name=veil.agent",
			},
			absent: []string{"memory-backend", "vhost-vsock", "-bios", "iommu_platform", "-netdev"},
		},
		{
			name: "read-only disk for initdata",
			cfg: func(c *hypervisor.Config) {
				c.Disks = []hypervisor.Disk{{Path: "/run/veil/vm/pod1/initdata.img", ReadOnly: true, Serial: "veil-initdata"}}
			},
			host: tcg,
			want: []string{
				"-drive file=/run/veil/vm/pod1/initdata.img,if=none,id=disk0,format=raw,readonly=on",
				"-device virtio-blk-pci,drive=disk0,serial=veil-initdata",
			},
		},
		{
			name: "kvm, params, sizes",
			cfg: func(c *hypervisor.Config) {
				c.KernelParams = []string{"agent.log=debug", "quiet"}
				c.MemoryMiB, c.VCPUs = 2048, 4
			},
			host:   Host{Accel: hypervisor.AccelKVM},
			want:   []string{"-accel kvm ", "-cpu host", "-m 2048M", "-smp 4", "-append console=ttyS0 panic=-1 agent.log=debug quiet"},
			absent: []string{"tb-size"},
		},
		{
			name: "tcg translation cache",
			cfg:  func(c *hypervisor.Config) { c.TCGCacheMiB = 256 },
			host: tcg,
			want: []string{"-accel tcg,tb-size=256 "},
		},
		{
			name: "microvm",
			cfg:  func(c *hypervisor.Config) { c.Machine = "microvm" },
			host: tcg,
			want: []string{"-machine microvm,pcie=on ", "virtio-serial-pci"},
		},
		{
			name: "cpu override",
			host: Host{Accel: hypervisor.AccelTCG, CPU: "Skylake-Server"},
			want: []string{"-cpu Skylake-Server"},
		},
		{
			name:   "vsock",
			cfg:    func(c *hypervisor.Config) { c.Transport = hypervisor.TransportVsock },
			host:   Host{Accel: hypervisor.AccelTCG, GuestCID: 1234, VhostFD: 3},
			want:   []string{"-device vhost-vsock-pci,id=vsock0,guest-cid=1234,vhostfd=3"},
			absent: []string{"virtio-serial", "agent.sock"},
		},
		{
			name: "virtiofs shares",
			cfg: func(c *hypervisor.Config) {
				c.SharedDirs = []hypervisor.SharedDir{{Tag: "rootfs", HostPath: "/a"}, {Tag: "cfg,1", HostPath: "/b", ReadOnly: true}}
			},
			host: tcg,
			want: []string{
				"-machine q35,memory-backend=mem ",
				"-object memory-backend-memfd,id=mem,size=512M,share=on",
				"-chardev socket,id=fs0,path=/run/veil/vm/pod1/fs0.sock -device vhost-user-fs-pci,chardev=fs0,tag=rootfs",
				"-chardev socket,id=fs1,path=/run/veil/vm/pod1/fs1.sock -device vhost-user-fs-pci,chardev=fs1,tag=cfg,,1",
			},
		},
		{
			name: "network",
			cfg:  func(c *hypervisor.Config) { c.Network = &hypervisor.Network{TapName: "tap0", MAC: "02:00:00:00:00:01"} },
			host: tcg,
			want: []string{
				"-netdev tap,id=net0,ifname=tap0,script=no,downscript=no",
				"-device virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01,romfile=",
			},
		},
		{
			name: "network tap opened in a netns",
			cfg: func(c *hypervisor.Config) {
				c.Network = &hypervisor.Network{TapName: "tap0", MAC: "02:00:00:00:00:01", Netns: "/run/netns/pod"}
			},
			host: Host{Accel: hypervisor.AccelTCG, TapFD: 4},
			want: []string{
				"-netdev tap,id=net0,fd=4 ",
				"-device virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01,romfile=",
			},
			absent: []string{"ifname="},
		},
		{
			name:   "no kernel sits in firmware",
			cfg:    func(c *hypervisor.Config) { c.Kernel, c.Initrd = "", "" },
			host:   tcg,
			absent: []string{"-kernel", "-initrd", "-append"},
		},
		{
			name: "snp",
			cfg: func(c *hypervisor.Config) {
				c.TEE = hypervisor.TEEConfig{Kind: hypervisor.TEESNP, Firmware: "/usr/share/ovmf/OVMF.amdsev.fd", HostData: hostData[:20]}
				c.Network = &hypervisor.Network{TapName: "tap0", MAC: "02:00:00:00:00:01"}
			},
			host: Host{Accel: hypervisor.AccelKVM},
			want: []string{
				"-machine q35,confidential-guest-support=sev0,memory-backend=ram1 ",
				"-cpu EPYC-v4",
				"-object memory-backend-memfd,id=ram1,size=512M,share=on",
				"-object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000," +
					"host-data=q6urq6urq6urq6urq6urq6urq6sAAAAAAAAAAAAAAAA=,kernel-hashes=on",
				"-bios /usr/share/ovmf/OVMF.amdsev.fd",
				"virtio-serial-pci,id=vser0,disable-legacy=on,iommu_platform=on",
				"romfile=,disable-legacy=on,iommu_platform=on",
			},
		},
		{
			name: "tdx",
			cfg: func(c *hypervisor.Config) {
				c.TEE = hypervisor.TEEConfig{Kind: hypervisor.TEETDX, Firmware: "/usr/share/ovmf/OVMF.tdx.fd",
					HostData: bytes.Repeat([]byte{0xff}, 48), QuoteGenerationSocket: "/run/qgs.sock"}
			},
			host: Host{Accel: hypervisor.AccelKVM},
			want: []string{
				"-machine q35,confidential-guest-support=tdx0 ",
				"-cpu host",
				`-object {"qom-type":"tdx-guest","id":"tdx0","mrconfigid":"` + strings.Repeat("/", 64) +
					`","quote-generation-socket":{"type":"unix","path":"/run/qgs.sock"}}`,
				"-bios /usr/share/ovmf/OVMF.tdx.fd",
				"virtio-serial-pci,id=vser0,disable-legacy=on,iommu_platform=on",
			},
			absent: []string{"memory-backend", "sev-snp"},
		},
		{
			name:   "sim launches a plain VM",
			cfg:    func(c *hypervisor.Config) { c.TEE = hypervisor.TEEConfig{Kind: hypervisor.TEESim, HostData: hostData} },
			host:   tcg,
			absent: []string{"confidential-guest-support", "sev-snp", "tdx-guest", "iommu_platform"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			args, err := CommandLine(cfg, tt.host)
			if err != nil {
				t.Fatalf("CommandLine: %v", err)
			}
			line := joined(args) + " "
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Errorf("missing %q in\n%s", w, line)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(line, a) {
					t.Errorf("unexpected %q in\n%s", a, line)
				}
			}
		})
	}
}

func TestCommandLineRejects(t *testing.T) {
	tests := []struct {
		name    string
		cfg     func(*hypervisor.Config)
		host    Host
		wantErr string
	}{
		{"auto accel unresolved", nil, Host{Accel: hypervisor.AccelAuto}, "host accel"},
		{"vsock without cid", func(c *hypervisor.Config) { c.Transport = hypervisor.TransportVsock }, tcg, "guest cid 0"},
		{"invalid config", func(c *hypervisor.Config) { c.Machine = "pc" }, tcg, `machine "pc"`},
		{"relative disk", func(c *hypervisor.Config) {
			c.Disks = []hypervisor.Disk{{Path: "initdata.img", Serial: "x"}}
		}, tcg, `disk 0: path "initdata.img"`},
		{"bad disk serial", func(c *hypervisor.Config) {
			c.Disks = []hypervisor.Disk{{Path: "/x.img", Serial: "a,b"}}
		}, tcg, `serial "a,b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			_, err := CommandLine(cfg, tt.host)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CommandLine error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	snp := func(c *hypervisor.Config) {
		c.TEE = hypervisor.TEEConfig{Kind: hypervisor.TEESNP, Firmware: "/ovmf.fd"}
	}
	tests := []struct {
		name    string
		cfg     func(*hypervisor.Config)
		wantErr []string // all must appear; none means valid
	}{
		{"valid default", nil, nil},
		{"valid snp", snp, nil},
		{"valid tdx 48 bytes", func(c *hypervisor.Config) {
			c.TEE = hypervisor.TEEConfig{Kind: hypervisor.TEETDX, Firmware: "/f", HostData: make([]byte, 48)}
		}, nil},
		{"missing id and relative state dir", func(c *hypervisor.Config) { c.ID, c.StateDir = "", "run/x" }, []string{"id \"\"", "state dir \"run/x\""}},
		{"bad machine", func(c *hypervisor.Config) { c.Machine = "pc" }, []string{`machine "pc"`}},
		{"hybrid vsock", func(c *hypervisor.Config) { c.Transport = hypervisor.TransportHybridVsock }, []string{"hybrid-vsock"}},
		{"bad accel", func(c *hypervisor.Config) { c.Accel = "hvf" }, []string{`accel "hvf"`}},
		{"initrd without kernel", func(c *hypervisor.Config) { c.Kernel = "" }, []string{"without a kernel"}},
		{"snp without firmware", func(c *hypervisor.Config) { snp(c); c.TEE.Firmware = "" }, []string{"needs firmware"}},
		{"tdx without firmware", func(c *hypervisor.Config) { c.TEE.Kind = hypervisor.TEETDX }, []string{"needs firmware"}},
		{"snp host data too long", func(c *hypervisor.Config) { snp(c); c.TEE.HostData = make([]byte, 33) }, []string{"33 bytes: want at most 32"}},
		{"tdx host data too long", func(c *hypervisor.Config) {
			c.TEE = hypervisor.TEEConfig{Kind: hypervisor.TEETDX, Firmware: "/f", HostData: make([]byte, 49)}
		}, []string{"49 bytes: want at most 48"}},
		{"snp under tcg", func(c *hypervisor.Config) { snp(c); c.Accel = hypervisor.AccelTCG }, []string{"needs KVM"}},
		{"snp on microvm", func(c *hypervisor.Config) { snp(c); c.Machine = "microvm" }, []string{"needs machine q35"}},
		{"host data on a plain VM", func(c *hypervisor.Config) { c.TEE.HostData = []byte{1} }, []string{"plain VM"}},
		{"unknown tee", func(c *hypervisor.Config) { c.TEE.Kind = "sgx" }, []string{`tee "sgx"`}},
		{"shares", func(c *hypervisor.Config) {
			c.SharedDirs = []hypervisor.SharedDir{{Tag: "a", HostPath: "rel"}, {Tag: "a", HostPath: "/x,y"}, {Tag: strings.Repeat("t", 37), HostPath: "/z"}}
		}, []string{`host path "rel"`, `tag "a" used twice`, "commas", "want 1-36 bytes"}},
		{"network", func(c *hypervisor.Config) {
			c.Network = &hypervisor.Network{TapName: "a-very-long-tap-name", MAC: "01:00:00:00:00:01"}
		},
			[]string{"want 1-15 bytes", "unicast"}},
		{"state dir too long", func(c *hypervisor.Config) { c.StateDir = "/" + strings.Repeat("d", 100) }, []string{"too long"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			err := Validate(cfg)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate passed, want errors %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestCheckVersion(t *testing.T) {
	v72, _ := parseVersion("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright")
	v100, _ := parseVersion("10.0.2")
	v101, _ := parseVersion("10.1")
	if v72.String() != "7.2.22" || v101.String() != "10.1.0" {
		t.Fatalf("parsed %s and %s", v72, v101)
	}
	tests := []struct {
		v       version
		kind    hypervisor.TEE
		wantErr bool
	}{
		{v72, hypervisor.TEENone, false},
		{v72, hypervisor.TEESim, false},
		{v72, hypervisor.TEESNP, true},
		{v100, hypervisor.TEESNP, false},
		{v100, hypervisor.TEETDX, true},
		{v101, hypervisor.TEETDX, false},
	}
	for _, tt := range tests {
		if err := checkVersion(tt.v, tt.kind); (err != nil) != tt.wantErr {
			t.Errorf("checkVersion(%s, %s) = %v, want error %v", tt.v, tt.kind, err, tt.wantErr)
		}
	}
}

func TestVirtiofsdArgs(t *testing.T) {
	rw := hypervisor.SharedDir{Tag: "t", HostPath: "/src"}
	ro := hypervisor.SharedDir{Tag: "t", HostPath: "/src", ReadOnly: true}
	tests := []struct {
		name  string
		f     virtiofsdFlavour
		share hypervisor.SharedDir
		want  string
	}{
		{"c", virtiofsdFlavour{}, rw, "vfsd --socket-path=/s -o source=/src -o cache=auto"},
		{"rust", virtiofsdFlavour{rust: true}, rw, "vfsd --socket-path=/s --shared-dir=/src --cache=auto"},
		{"rust readonly", virtiofsdFlavour{rust: true, readonly: true}, ro, "vfsd --socket-path=/s --shared-dir=/src --cache=auto --readonly"},
		{"c readonly", virtiofsdFlavour{}, ro, "unshare --mount --propagation private -- /bin/sh -c " +
			`mount --bind -- "$1" "$1" && mount -o remount,bind,ro -- "$1" && shift && exec "$@" sh /src ` +
			"vfsd --socket-path=/s -o source=/src -o cache=auto"},
	}
	for _, tt := range tests {
		if got := joined(virtiofsdArgs("vfsd", tt.f, "/s", tt.share)); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}
