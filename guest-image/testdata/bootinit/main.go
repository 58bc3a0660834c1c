// Command bootinit is a tiny /init for boot tests of the guest image: it
// loads the modules listed in /etc/veil/modules.list in order, prints one
// line per module and the time since boot, and powers the VM off.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

func main() {
	fmt.Println("bootinit: started")
	if err := unix.Mount("proc", "/proc", "proc", 0, ""); err != nil {
		fmt.Println("bootinit: mount /proc:", err)
	}
	f, err := os.Open("/etc/veil/modules.list")
	if err != nil {
		fmt.Println("bootinit:", err)
	} else {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			load(strings.TrimSpace(sc.Text()))
		}
		f.Close()
	}
	if up, err := os.ReadFile("/proc/uptime"); err == nil {
		fmt.Println("bootinit: uptime", strings.Fields(string(up))[0])
	}
	fmt.Println("bootinit: done")
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Println("bootinit: power off:", err)
	}
}

// load loads one module with finit_module and reports the outcome.
func load(path string) {
	if path == "" {
		return
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Printf("bootinit: module %s: open: %v\n", path, err)
		return
	}
	defer unix.Close(fd)
	if err := unix.FinitModule(fd, "", 0); err != nil {
		fmt.Printf("bootinit: module %s: %v\n", path, err)
		return
	}
	fmt.Printf("bootinit: module %s: loaded\n", path)
}
