package config

import "testing"

// The shipped configuration file must load and say what Default says.
func TestShippedConfiguration(t *testing.T) {
	c, err := Load("configuration.toml")
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	if c.Hypervisor.Image != d.Hypervisor.Image || c.Hypervisor.MemoryMiB != d.Hypervisor.MemoryMiB ||
		c.Hypervisor.BootTimeout != d.Hypervisor.BootTimeout || c.Hypervisor.Accel != d.Hypervisor.Accel {
		t.Errorf("shipped %+v differs from Default %+v", c.Hypervisor, d.Hypervisor)
	}
}
