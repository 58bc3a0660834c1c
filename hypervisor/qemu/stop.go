package qemu

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Stop powers the VM off and removes every process, socket and file it created: with
// WithPowerdownGrace it first presses the ACPI power button; then it tells QEMU to quit;
// when ctx ends (or after 10 s if ctx has no deadline) it kills QEMU. Calling it again
// returns the first call's result. Stop before Start makes a later Start fail.
func (v *VM) Stop(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stopped {
		return v.stopErr
	}
	v.stopped = true
	if v.qemu != nil {
		v.stopQEMU(ctx)
		<-v.done
	}
	v.stopErr = v.teardown()
	return v.stopErr
}

// stopQEMU ends QEMU, as gently as ctx allows.
func (v *VM) stopQEMU(ctx context.Context) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStopTimeout)
		defer cancel()
	}
	if v.qmp != nil && v.opts.powerdownGrace > 0 && !v.qemu.exited() {
		if err := v.qmp.SystemPowerdown(ctx); err == nil && v.awaitExit(ctx, v.opts.powerdownGrace) {
			return
		}
	}
	if v.qmp != nil && !v.qemu.exited() {
		if err := v.qmp.Quit(ctx); err == nil && v.awaitExit(ctx, defaultStopTimeout) {
			return
		}
	}
	v.qemu.stop(0)
}

// awaitExit waits up to d (and at most until ctx ends) for QEMU to exit.
func (v *VM) awaitExit(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-v.qemu.done:
		return true
	case <-ctx.Done():
	case <-t.C:
	}
	return v.qemu.exited()
}

// teardown kills whatever still runs and removes what Start created, in reverse order. It
// is safe to call more than once.
func (v *VM) teardown() error {
	var errs []error
	if v.qemu != nil {
		v.qemu.stop(0)
	}
	for _, p := range v.fsds {
		p.stop(time.Second)
	}
	if v.qmp != nil {
		_ = v.qmp.Close() // QEMU is gone: the connection is over either way
		v.qmp = nil
	}
	if v.serial != nil {
		if err := v.serial.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if v.vhost != nil {
		_ = v.vhost.Close()
		v.vhost = nil
	}
	if v.tap != nil {
		_ = v.tap.Close()
		v.tap = nil
	}
	if v.dir != nil {
		if err := v.dir.Remove(); err != nil {
			errs = append(errs, err)
		}
		v.dir = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("qemu: clean up VM %s: %w", v.cfg.ID, err)
	}
	return nil
}
