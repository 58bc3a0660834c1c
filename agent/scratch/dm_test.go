package scratch

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func testKey() []byte {
	k := make([]byte, KeySize)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

func TestCryptTarget(t *testing.T) {
	tg, err := CryptTarget(testKey(), 254, 16, 20971520+7)
	if err != nil {
		t.Fatal(err)
	}
	want := "aes-xts-plain64 " +
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" +
		"202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f" +
		" 0 254:16 0 1 sector_size:4096"
	if string(tg.Params) != want {
		t.Errorf("params\n got %q\nwant %q", tg.Params, want)
	}
	if tg.Type != "crypt" || tg.Start != 0 || tg.Length != 20971520 {
		t.Errorf("target %+v: want crypt from 0, 20971520 sectors (rounded down to 4 KiB)", tg)
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
	if _, err := CryptTarget(make([]byte, 32), 1, 1, 1<<20); err == nil || !strings.Contains(err.Error(), "32 bytes, want 64") {
		t.Errorf("a 256-bit key: %v; want refused", err)
	}
	if _, err := CryptTarget(testKey(), 1, 1, 7); err == nil || !strings.Contains(err.Error(), "less than one") {
		t.Errorf("a 7-sector disk: %v; want refused", err)
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
