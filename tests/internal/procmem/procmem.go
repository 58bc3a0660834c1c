// Package procmem reads a process's memory from /proc/PID/smaps and splits a QEMU process's
// proportional set size (PSS) into what holds it: the guest's RAM, TCG's translation cache
// and the rest (QEMU's heap, with its copies of the kernel and initrd, its libraries and
// binary). The benchmarks report the split so that a memory goal not reached says what
// bounds it.
package procmem

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Mapping is one mapping of /proc/PID/smaps with the figures the split needs.
type Mapping struct {
	Start, End uint64 // addresses
	Perms      string // e.g. "rwxp"
	Name       string // the path or [heap], "" for anonymous memory
	PssKiB     uint64
	RssKiB     uint64
}

// SizeKiB is the mapping's virtual size.
func (m Mapping) SizeKiB() uint64 { return (m.End - m.Start) / 1024 }

// Smaps reads /proc/PID/smaps.
func Smaps(pid int) ([]Mapping, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var maps []Mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if start, end, ok := addressRange(fields[0]); ok && len(fields) >= 5 {
			m := Mapping{Start: start, End: end, Perms: fields[1]}
			if len(fields) >= 6 {
				m.Name = strings.Join(fields[5:], " ")
			}
			maps = append(maps, m)
			continue
		}
		if len(maps) == 0 || len(fields) < 2 {
			continue
		}
		last := &maps[len(maps)-1]
		switch fields[0] {
		case "Pss:":
			last.PssKiB, _ = strconv.ParseUint(fields[1], 10, 64)
		case "Rss:":
			last.RssKiB, _ = strconv.ParseUint(fields[1], 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading /proc/%d/smaps: %w", pid, err)
	}
	return maps, nil
}

func addressRange(s string) (start, end uint64, ok bool) {
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseUint(a, 16, 64)
	end, err2 := strconv.ParseUint(b, 16, 64)
	return start, end, err1 == nil && err2 == nil && end > start
}

// QEMUSplit is a QEMU process's PSS in KiB by what holds it.
type QEMUSplit struct {
	GuestRAM, TCGCache, Other uint64
}

// Total is the whole PSS.
func (s QEMUSplit) Total() uint64 { return s.GuestRAM + s.TCGCache + s.Other }

// SplitQEMU splits a QEMU process's PSS. The guest's RAM is the mapping of exactly ramMiB
// (anonymous, or the memfd backend QEMU maps for virtio-fs); TCG's translation cache is the
// executable anonymous mapping of tcgMiB (QEMU adds a guard page; tcgMiB 0 for KVM). A
// process with no mapping of the guest's size is an error: the split would be wrong.
func SplitQEMU(maps []Mapping, ramMiB, tcgMiB uint64) (QEMUSplit, error) {
	var s QEMUSplit
	foundRAM := false
	for _, m := range maps {
		size := m.SizeKiB()
		switch {
		case size == ramMiB*1024 && (m.Name == "" || strings.HasPrefix(m.Name, "/memfd:")):
			s.GuestRAM += m.PssKiB
			foundRAM = true
		case tcgMiB > 0 && strings.Contains(m.Perms, "x") && m.Name == "" && size >= tcgMiB*1024-64 && size <= tcgMiB*1024+64:
			s.TCGCache += m.PssKiB
		default:
			s.Other += m.PssKiB
		}
	}
	if !foundRAM {
		return s, fmt.Errorf("no mapping of %d MiB (the guest's RAM) in QEMU's smaps", ramMiB)
	}
	return s, nil
}

// QEMUSizes reads the guest's RAM (-m NM) and TCG's translation cache (-accel tcg,tb-size=N;
// 0 without TCG) in MiB from a QEMU process's command line.
func QEMUSizes(pid int) (ramMiB, tcgMiB uint64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, 0, err
	}
	args := strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-m":
			ramMiB, err = strconv.ParseUint(strings.TrimSuffix(args[i+1], "M"), 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("QEMU pid %d: -m %q: want a size in MiB", pid, args[i+1])
			}
		case "-accel":
			for _, opt := range strings.Split(args[i+1], ",") {
				if v, ok := strings.CutPrefix(opt, "tb-size="); ok {
					if tcgMiB, err = strconv.ParseUint(v, 10, 64); err != nil {
						return 0, 0, fmt.Errorf("QEMU pid %d: tb-size %q: %v", pid, v, err)
					}
				}
			}
		}
	}
	if ramMiB == 0 {
		return 0, 0, fmt.Errorf("QEMU pid %d: no -m on its command line", pid)
	}
	return ramMiB, tcgMiB, nil
}

// SplitQEMUProcess reads a running QEMU's sizes and smaps and splits its PSS.
func SplitQEMUProcess(pid int) (QEMUSplit, error) {
	ram, tcg, err := QEMUSizes(pid)
	if err != nil {
		return QEMUSplit{}, err
	}
	maps, err := Smaps(pid)
	if err != nil {
		return QEMUSplit{}, err
	}
	return SplitQEMU(maps, ram, tcg)
}

// FieldKiB reads the "Key: N kB" line of a /proc file such as /proc/meminfo,
// /proc/PID/status or /proc/PID/smaps_rollup (key with its colon, e.g. "Pss:").
func FieldKiB(path, key string) (float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if fields := strings.Fields(line); len(fields) >= 2 && fields[0] == key {
			v, err := strconv.ParseFloat(fields[1], 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %s %q: %v", path, key, fields[1], err)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("%s has no %s line", path, key)
}
