// Command gohello is the floor for a Go program's start in the guest (BenchmarkExec): a
// static Go binary with no package of its own to initialise, beside the agent binary, whose
// start libcontainer pays for every container process.
package main

import "os"

func main() { os.Stdout.WriteString("hello\n") }
