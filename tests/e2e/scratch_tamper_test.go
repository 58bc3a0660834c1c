//go:build e2e

package e2e

// The scratch disk's integrity (docs/scratch.md): the guest authenticates every 4 KiB block it
// wrote (dm-crypt's HMAC-SHA256 over the sector, the IV and the ciphertext, stored by
// dm-integrity). A host that changes a block under a running guest must make the guest's read
// of it fail, not return altered data.

import (
	"bytes"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/shim/sandbox"
)

// scratchConsole is what the agent prints when it has set the scratch disk up.
const scratchConsole = "dm-crypt capi:authenc(hmac(sha256),xts(aes))-random on dm-integrity (48-byte tags), ext2 on " + api.ScratchDir

// scratchLine returns the agent's console line about the scratch disk (set-up time, data
// size), for the test log.
func scratchLine(t *testing.T, e *hostileEnv) string {
	t.Helper()
	b, err := os.ReadFile(e.sb.VM.ConsoleLog())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if i := strings.Index(l, "msg=\"scratch disk "); i >= 0 {
			return l[i:]
		}
	}
	return "(no scratch disk line)"
}

// eilseq is strerror(EILSEQ) in glibc.
const eilseq = "Invalid or incomplete multibyte or wide character"

// blockSums returns a hash of each 4 KiB block of the file at path that is not all zeros, by
// block index.
func blockSums(t *testing.T, path string) map[int64]uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[int64]uint64{}
	zero := make([]byte, 4096)
	buf := make([]byte, 4<<20)
	var off int64
	for {
		n, err := io.ReadFull(f, buf)
		for i := 0; i+4096 <= n; i += 4096 {
			b := buf[i : i+4096]
			if !bytes.Equal(b, zero) {
				h := fnv.New64a()
				h.Write(b)
				sums[(off+int64(i))/4096] = h.Sum64()
			}
		}
		off += int64(n)
		if err != nil {
			break
		}
	}
	return sums
}

// longestChange returns the first block and length of the longest run of consecutive blocks
// that differ between before and after.
func longestChange(before, after map[int64]uint64) (first, length int64) {
	changed := func(b int64) bool {
		s, ok := after[b]
		return ok && s != before[b]
	}
	for b := range after {
		if !changed(b) || changed(b-1) {
			continue
		}
		n := int64(1)
		for changed(b + n) {
			n++
		}
		if n > length {
			first, length = b, n
		}
	}
	return first, length
}

// TestScratchTampered: the host flips one byte in a block of a file the guest wrote to its
// scratch disk; the guest's next read of that block from the disk (O_DIRECT, past its page
// cache) fails (EILSEQ), the console names the sector, and the file's other blocks still
// read.
func TestScratchTampered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scratch.img")
	if err := sandbox.CreateScratchDisk(path, 2048); err != nil {
		t.Fatal(err)
	}
	e := newHostileEnv(t, polAllowAll, withScratch(path))
	if !consoleHas(t, e, scratchConsole) {
		t.Fatalf("the guest did not set up its authenticated scratch disk:\n%s", sandbox.ConsoleTail(e.sb.VM.ConsoleLog(), 40))
	}
	t.Log(scratchLine(t, e))
	id := startApp(t, e)
	before := blockSums(t, path)

	// 4 MiB of random data, synced, then read back from the disk: the control, which must
	// pass before the host touches anything.
	out, st, err := e.exec(id, e.newID("write"), rootProcess("sh", "-c",
		"dd if=/dev/urandom of=/victim.bin bs=1M count=4 conv=fsync 2>/dev/null && sync && "+
			"dd if=/victim.bin of=/dev/null bs=1M iflag=direct && echo read-ok"))
	if err != nil || st != 0 || !strings.Contains(out, "read-ok") {
		t.Fatalf("write and read back /victim.bin: %v, status %d, %q", err, st, out)
	}
	first, n := longestChange(before, blockSums(t, path))
	// The file's 1024 blocks need not be contiguous on the disk (ext2 puts its indirect
	// blocks among them, and a group's end can split them), but metadata never changes 1 MiB
	// at once: a run that long is the file's data.
	if n < 256 {
		t.Fatalf("the longest run of blocks the write changed in the host's file is %d blocks: want at least 256 of the file's 1024", n)
	}
	// Flip one byte of a block in the middle of the file's data.
	victim := (first + n/2) * 4096
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	blk := make([]byte, 4096)
	if _, err := f.ReadAt(blk, victim); err != nil {
		t.Fatal(err)
	}
	blk[100] ^= 0x01
	if _, err := f.WriteAt(blk, victim); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Logf("flipped a bit at byte %d of the host's file (block %d of a run of %d the guest wrote)", victim+100, victim/4096, n)

	out, st, err = e.exec(id, e.newID("read"), rootProcess("sh", "-c",
		"dd if=/victim.bin of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null && echo head-ok; "+
			"dd if=/victim.bin of=/dev/null bs=1M iflag=direct 2>&1; echo status=$?"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the guest reads the tampered file: %q", out)
	if !strings.Contains(out, "head-ok") {
		t.Errorf("the file's first block, untouched, no longer reads: %q", out)
	}
	// A failed tag check is BLK_STS_PROTECTION, which reaches the reader as EILSEQ (glibc's
	// message, busybox being glibc's); EIO would do as well.
	if strings.Contains(out, "status=0") || !(strings.Contains(out, eilseq) || strings.Contains(out, "I/O error")) {
		t.Fatalf("the guest read a block the host altered without an error: %q", out)
	}
	if !consoleHas(t, e, "INTEGRITY AEAD ERROR") {
		t.Errorf("the console does not report the integrity error:\n%s", sandbox.ConsoleTail(e.sb.VM.ConsoleLog(), 20))
	}
}
