package procmem

import (
	"os"
	"testing"
)

func TestSmapsOfSelf(t *testing.T) {
	maps, err := Smaps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var pss, rss uint64
	heap := false
	for _, m := range maps {
		pss += m.PssKiB
		rss += m.RssKiB
		heap = heap || m.Name == "[heap]" || m.Name == "[stack]"
	}
	if len(maps) < 5 || pss == 0 || rss < pss || !heap {
		t.Fatalf("%d mappings, PSS %d KiB, RSS %d KiB, heap or stack named: %v", len(maps), pss, rss, heap)
	}
}

func TestSplitQEMU(t *testing.T) {
	const mib = 1 << 20
	maps := []Mapping{
		{Start: 0x1000, End: 0x1000 + 512*mib, Perms: "rw-s", Name: "/memfd:mem (deleted)", PssKiB: 200 << 10},
		{Start: 0x7f0000000000, End: 0x7f0000000000 + 64*mib + 4096, Perms: "rwxp", PssKiB: 40 << 10},
		{Start: 0x7e0000000000, End: 0x7e0000000000 + 32*mib, Perms: "rw-p", PssKiB: 30 << 10},
		{Start: 0x5000, End: 0x6000, Perms: "r-xp", Name: "/usr/bin/qemu-system-x86_64", PssKiB: 4},
	}
	s, err := SplitQEMU(maps, 512, 64)
	if err != nil {
		t.Fatal(err)
	}
	if want := (QEMUSplit{GuestRAM: 200 << 10, TCGCache: 40 << 10, Other: 30<<10 + 4}); s != want {
		t.Fatalf("split %+v, want %+v", s, want)
	}
	// KVM: no translation cache, the executable mapping is QEMU's own.
	if s, err = SplitQEMU(maps, 512, 0); err != nil || s.TCGCache != 0 || s.Other != 70<<10+4 {
		t.Fatalf("KVM split %+v, %v", s, err)
	}
	if _, err := SplitQEMU(maps, 1024, 64); err == nil {
		t.Fatal("no error for a guest size that has no mapping")
	}
}

func TestFieldKiB(t *testing.T) {
	if v, err := FieldKiB("/proc/meminfo", "MemTotal:"); err != nil || v <= 0 {
		t.Fatalf("MemTotal: %v, %v", v, err)
	}
	if _, err := FieldKiB("/proc/meminfo", "NoSuchField:"); err == nil {
		t.Fatal("no error for a missing field")
	}
}
