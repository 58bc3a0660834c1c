package initsys

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

// LogLevelParam is the kernel command-line parameter that sets the log level of init and the
// agent: veil.log_level=debug (trace, debug, info, warn, error).
const LogLevelParam = "veil.log_level"

// ParseCmdline splits a kernel command line into its parameters: "key=value" gives
// key → value, a bare "flag" gives flag → "". Double quotes group a value with spaces, as
// the kernel allows (key="a b"). A later parameter overrides an earlier one.
func ParseCmdline(cmdline string) map[string]string {
	params := make(map[string]string)
	for _, field := range splitCmdline(cmdline) {
		k, v, _ := strings.Cut(field, "=")
		params[k] = strings.ReplaceAll(v, `"`, "")
	}
	return params
}

func splitCmdline(s string) []string {
	var (
		fields []string
		cur    strings.Builder
		quoted bool
	)
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case (r == ' ' || r == '\t' || r == '\n') && !quoted:
			if cur.Len() > 0 {
				fields = append(fields, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		fields = append(fields, cur.String())
	}
	return fields
}

// KernelParam returns the value of the kernel command-line parameter name (from
// /proc/cmdline) and whether it is there.
func KernelParam(name string) (string, bool) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return "", false
	}
	v, ok := ParseCmdline(string(b))[name]
	return v, ok
}

// SetupLogging sends the process's logs to stderr (the console in the VM) as text lines
// without colours, at level; an empty level means the one the kernel command line sets with
// veil.log_level, or info. It returns ctx with a logger that adds the field component.
func SetupLogging(ctx context.Context, component, level string) (context.Context, error) {
	l := log.L.Logger
	l.SetOutput(os.Stderr)
	l.SetFormatter(&logrus.TextFormatter{
		FullTimestamp:   true,
		TimestampFormat: "15:04:05.000000",
		DisableColors:   true,
	})
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("component", component))
	if level == "" {
		level, _ = KernelParam(LogLevelParam)
	}
	if level == "" {
		level = "info"
	}
	if err := log.SetLevel(level); err != nil {
		return ctx, fmt.Errorf("log level %q: %w", level, err)
	}
	return ctx, nil
}
