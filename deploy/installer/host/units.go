package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// Units starts and stops systemd units of the host (veil-snapshotter's): through systemd's
// private D-Bus socket, else `nsenter --mount=<root>/proc/1/ns/mnt -- systemctl`, as Systemd
// restarts containerd.
type Units struct{ Host Host }

// EnableStart reloads systemd's unit files, enables unit and (re)starts it, waiting for the
// job.
func (u Units) EnableStart(ctx context.Context, unit string) error {
	return u.do(ctx, unit, true)
}

// StopDisable stops unit, disables it and reloads systemd's unit files (its file is gone by
// then or about to be).
func (u Units) StopDisable(ctx context.Context, unit string) error {
	return u.do(ctx, unit, false)
}

func (u Units) do(ctx context.Context, unit string, start bool) error {
	if !strings.Contains(unit, ".") {
		unit += ".service"
	}
	verb := "enable --now"
	if !start {
		verb = "disable --now"
	}
	var errs []error
	sock := u.Host.Path("/run/systemd/private")
	if _, err := os.Stat(sock); err == nil {
		if err := unitDBus(ctx, sock, unit, start); err == nil {
			return nil
		} else {
			errs = append(errs, err)
		}
	} else {
		errs = append(errs, fmt.Errorf("no systemd D-Bus socket %s", sock))
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		errs = append(errs, errors.New("no nsenter in the installer's image"))
		return fmt.Errorf("systemctl %s %s: %w", verb, unit, errors.Join(errs...))
	}
	args := []string{"--mount=" + u.Host.Path("/proc/1/ns/mnt"), "--", "systemctl"}
	for _, a := range [][]string{{"daemon-reload"}, append(strings.Fields(verb), unit)} {
		cmd := exec.CommandContext(ctx, nsenter, append(args, a...)...)
		cmd.Env = []string{"PATH=" + strings.Join(SearchPath, ":"), "LC_ALL=C"}
		if _, err := u.Host.run(cmd); err != nil {
			errs = append(errs, err)
			return fmt.Errorf("systemctl %s %s: %w", verb, unit, errors.Join(errs...))
		}
	}
	return nil
}

// unitDBus reloads, then enables and restarts unit (start) or stops and disables it.
func unitDBus(ctx context.Context, sock, unit string, start bool) error {
	conn, err := sdbus.NewConnection(func() (*godbus.Conn, error) {
		c, err := godbus.Dial("unix:path="+sock, godbus.WithContext(ctx))
		if err != nil {
			return nil, err
		}
		if err := c.Auth([]godbus.Auth{godbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	})
	if err != nil {
		return fmt.Errorf("systemd D-Bus %s: %w", sock, err)
	}
	defer conn.Close()
	wait := func(what string, job func(chan<- string) (int, error)) error {
		done := make(chan string, 1)
		if _, err := job(done); err != nil {
			return fmt.Errorf("systemd D-Bus: %s %s: %w", what, unit, err)
		}
		select {
		case res := <-done:
			if res != "done" {
				return fmt.Errorf("systemd D-Bus: %s %s: job %s (journalctl -u %s says why)", what, unit, res, unit)
			}
			return nil
		case <-ctx.Done():
			return fmt.Errorf("systemd D-Bus: %s %s: %w", what, unit, ctx.Err())
		}
	}
	if start {
		if err := conn.ReloadContext(ctx); err != nil {
			return fmt.Errorf("systemd D-Bus: daemon-reload: %w", err)
		}
		if _, _, err := conn.EnableUnitFilesContext(ctx, []string{unit}, false, true); err != nil {
			return fmt.Errorf("systemd D-Bus: enable %s: %w", unit, err)
		}
		return wait("restart", func(ch chan<- string) (int, error) { return conn.RestartUnitContext(ctx, unit, "replace", ch) })
	}
	if err := wait("stop", func(ch chan<- string) (int, error) { return conn.StopUnitContext(ctx, unit, "replace", ch) }); err != nil {
		return err
	}
	if _, err := conn.DisableUnitFilesContext(ctx, []string{unit}, false); err != nil {
		return fmt.Errorf("systemd D-Bus: disable %s: %w", unit, err)
	}
	if err := conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("systemd D-Bus: daemon-reload: %w", err)
	}
	return nil
}
