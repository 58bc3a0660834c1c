package sandbox

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestCreateScratchDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d", "scratch.img")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("old ciphertext"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CreateScratchDisk(path, 1024); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 1<<30 || fi.Mode().Perm() != 0o600 {
		t.Errorf("scratch file: %d bytes, mode %v; want 1 GiB, 0600", fi.Size(), fi.Mode().Perm())
	}
	if blocks := fi.Sys().(*syscall.Stat_t).Blocks; blocks != 0 {
		t.Errorf("scratch file has %d blocks allocated: want sparse (the old content gone)", blocks)
	}
	if err := CreateScratchDisk(path, 0); err == nil {
		t.Error("a 0 MiB scratch disk was accepted")
	}
	if err := RemoveScratchDisk(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("scratch file still there: %v", err)
	}
	if err := RemoveScratchDisk(path); err != nil {
		t.Errorf("removing a missing scratch file: %v", err)
	}
}
