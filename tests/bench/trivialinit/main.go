// Command trivialinit is the baseline for the boot benchmark: an init that prints one line to
// the console and powers the VM off, so a bare boot of the same kernel and initrd can be timed
// beside Veil's boot to agent-ready.
package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// Marker is the line the benchmark waits for on the console.
const Marker = "veil-bench: init reached"

func main() {
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		f.WriteString(Marker + "\n")
		f.Close()
	}
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
