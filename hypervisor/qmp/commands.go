package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Status is the reply of query-status.
type Status struct {
	Running    bool   `json:"running"`
	Status     string `json:"status"` // "running", "paused", "prelaunch", "shutdown", ...
	Singlestep bool   `json:"singlestep,omitempty"`
}

// QueryStatus runs query-status.
func (c *Client) QueryStatus(ctx context.Context) (Status, error) {
	raw, err := c.Execute(ctx, "query-status", nil)
	if err != nil {
		return Status{}, err
	}
	var s Status
	if err := json.Unmarshal(raw, &s); err != nil {
		return Status{}, fmt.Errorf("qmp: query-status: decode %s: %w", raw, err)
	}
	return s, nil
}

// Cont resumes a VM started paused (-S) or stopped.
func (c *Client) Cont(ctx context.Context) error {
	_, err := c.Execute(ctx, "cont", nil)
	return err
}

// SystemPowerdown presses the guest's ACPI power button. The guest may ignore it.
func (c *Client) SystemPowerdown(ctx context.Context) error {
	_, err := c.Execute(ctx, "system_powerdown", nil)
	return err
}

// Quit makes QEMU exit at once (the guest is not asked). QEMU may close the connection
// before or after it replies; both count as success.
func (c *Client) Quit(ctx context.Context) error {
	_, err := c.Execute(ctx, "quit", nil)
	if err != nil && errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}
