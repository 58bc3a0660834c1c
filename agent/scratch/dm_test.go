package scratch

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// testKey is KeySize bytes 0, 1, 2, ...
func testKey() []byte {
	k := make([]byte, KeySize)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

func TestCryptTarget(t *testing.T) {
	tg, err := CryptTarget(testKey(), 254, 1, 20766208)
	if err != nil {
		t.Fatal(err)
	}
	// The key is the XTS key (64 bytes), then the HMAC key (32); the tag is the MAC (32) and
	// the random IV (16).
	want := "capi:authenc(hmac(sha256),xts(aes))-random " +
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" +
		"202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f" +
		"404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f" +
		" 0 254:1 0 2 integrity:48:aead sector_size:4096"
	if string(tg.Params) != want {
		t.Errorf("params\n got %q\nwant %q", tg.Params, want)
	}
	if tg.Type != "crypt" || tg.Start != 0 || tg.Length != 20766208 {
		t.Errorf("target %+v: want crypt from 0, 20766208 sectors", tg)
	}
	if strings.Contains(string(tg.Params), "allow_discards") {
		t.Error("discards must not reach the host")
	}
	Wipe(tg.Params)
	if bytes.Count(tg.Params, []byte{0}) != len(tg.Params) {
		t.Error("Wipe left bytes")
	}
}

func TestCryptTargetBad(t *testing.T) {
	if _, err := CryptTarget(make([]byte, 64), 1, 1, 1<<20); err == nil || !strings.Contains(err.Error(), "64 bytes, want 96") {
		t.Errorf("an XTS key without the HMAC key: %v; want refused", err)
	}
	for _, n := range []uint64{0, 7, 1<<20 + 4} {
		if _, err := CryptTarget(testKey(), 1, 1, n); err == nil || !strings.Contains(err.Error(), "multiple of 8") {
			t.Errorf("a length of %d sectors: %v; want refused", n, err)
		}
	}
}

func TestIntegrityTarget(t *testing.T) {
	tg, err := IntegrityTarget(254, 16, 8)
	if err != nil {
		t.Fatal(err)
	}
	want := "254:16 0 48 D 3 block_size:4096 fix_padding journal_sectors:1"
	if string(tg.Params) != want || tg.Type != "integrity" || tg.Start != 0 || tg.Length != 8 {
		t.Errorf("target %s %d %d %q, want integrity 0 8 %q", tg.Type, tg.Start, tg.Length, tg.Params, want)
	}
	if strings.Contains(string(tg.Params), "internal_hash") || strings.Contains(string(tg.Params), "allow_discards") {
		t.Error("the tags must come from dm-crypt, and discards must not reach the host")
	}
	if _, err := IntegrityTarget(254, 16, 12); err == nil || !strings.Contains(err.Error(), "multiple of 8") {
		t.Errorf("12 sectors: %v; want refused", err)
	}
}

// superblock returns a dm-integrity superblock as the kernel formats it for IntegrityTarget.
func superblock(tag uint16, log2PerBlock uint8, provided uint64) []byte {
	sb := make([]byte, SuperblockSize)
	copy(sb, "integrt\x00")
	sb[8] = 5 // version
	sb[9] = 15
	binary.LittleEndian.PutUint16(sb[10:], tag)
	binary.LittleEndian.PutUint32(sb[12:], 1)
	binary.LittleEndian.PutUint64(sb[16:], provided)
	binary.LittleEndian.PutUint32(sb[24:], 0x10) // SB_FLAG_FIXED_PADDING
	sb[28] = log2PerBlock
	return sb
}

func TestProvidedSectors(t *testing.T) {
	n, err := ProvidedSectors(superblock(48, 3, 4145160+3), 4194304)
	if err != nil || n != 4145160 {
		t.Errorf("ProvidedSectors: %d, %v; want 4145160 (rounded down to a block)", n, err)
	}
	for name, c := range map[string]struct {
		sb   []byte
		want string
	}{
		"zero":        {make([]byte, SuperblockSize), "no magic"},
		"short":       {[]byte("integrt\x00"), "no magic"},
		"tag size":    {superblock(32, 3, 1<<20), "tag size 32, want 48"},
		"block size":  {superblock(48, 0, 1<<20), "1 sectors per block, want 8"},
		"no data":     {superblock(48, 3, 7), "7 data sectors"},
		"beyond disk": {superblock(48, 3, 1<<23), "on a disk of"},
	} {
		if _, err := ProvidedSectors(c.sb, 4194304); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error about %q", name, err, c.want)
		}
	}
}

func TestGroupStarts(t *testing.T) {
	// 2 GiB less the tags: 15.8 groups of 128 MiB, so 16 starts, 128 MiB apart.
	offs := GroupStarts(4145160)
	if len(offs) != 16 || offs[0] != 0 || offs[1] != 128<<20 || offs[15] != 15*128<<20 {
		t.Errorf("GroupStarts: %v", offs)
	}
	if got := GroupStarts(8); len(got) != 1 || got[0] != 0 {
		t.Errorf("one block: %v", got)
	}
}

// TestTableBuffer checks the DM_TABLE_LOAD layout byte by byte: header, then each
// dm_target_spec with its NUL-terminated params, padded to 8, next = record length.
func TestTableBuffer(t *testing.T) {
	targets := []Target{
		{Start: 0, Length: 8, Type: "crypt", Params: []byte("abc")},
		{Start: 8, Length: 16, Type: "zero", Params: []byte("0123456789")},
	}
	buf, err := TableBuffer("veil-scratch", targets)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	rec1 := 40 + 8  // 40 + len("abc")+1 = 44 -> 48
	rec2 := 40 + 16 // 40 + 11 = 51 -> 56
	if len(buf) != unix.SizeofDmIoctl+rec1+rec2 {
		t.Fatalf("buffer %d bytes, want %d", len(buf), unix.SizeofDmIoctl+rec1+rec2)
	}
	if v := le.Uint32(buf[0:]); v != 4 {
		t.Errorf("version major %d, want 4", v)
	}
	if ds, st, n := le.Uint32(buf[12:]), le.Uint32(buf[16:]), le.Uint32(buf[20:]); ds != uint32(len(buf)) || st != unix.SizeofDmIoctl || n != 2 {
		t.Errorf("data_size %d data_start %d target_count %d", ds, st, n)
	}
	if f := le.Uint32(buf[28:]); f&unix.DM_SECURE_DATA_FLAG == 0 {
		t.Errorf("flags %#x: want DM_SECURE_DATA_FLAG so the kernel wipes its copy", f)
	}
	if name := string(bytes.TrimRight(buf[48:48+128], "\x00")); name != "veil-scratch" {
		t.Errorf("name %q", name)
	}
	o := unix.SizeofDmIoctl
	if le.Uint64(buf[o:]) != 0 || le.Uint64(buf[o+8:]) != 8 || le.Uint32(buf[o+20:]) != uint32(rec1) ||
		string(bytes.TrimRight(buf[o+24:o+40], "\x00")) != "crypt" || string(buf[o+40:o+44]) != "abc\x00" {
		t.Errorf("first spec % x", buf[o:o+rec1])
	}
	o += rec1
	if le.Uint64(buf[o:]) != 8 || le.Uint64(buf[o+8:]) != 16 || le.Uint32(buf[o+20:]) != uint32(rec2) ||
		string(bytes.TrimRight(buf[o+24:o+40], "\x00")) != "zero" || string(buf[o+40:o+51]) != "0123456789\x00" {
		t.Errorf("second spec % x", buf[o:o+rec2])
	}
}

func TestTableBufferBad(t *testing.T) {
	for name, c := range map[string]struct {
		name    string
		targets []Target
		want    string
	}{
		"no target": {"x", nil, "no target"},
		"no name":   {"", []Target{{Type: "crypt"}}, "name"},
		"long name": {strings.Repeat("n", 128), []Target{{Type: "crypt"}}, "name"},
		"no type":   {"x", []Target{{}}, "target type"},
		"long type": {"x", []Target{{Type: strings.Repeat("t", 16)}}, "target type"},
	} {
		if _, err := TableBuffer(c.name, c.targets); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error about %s", name, err, c.want)
		}
	}
}
