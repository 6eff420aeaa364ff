//go:build !linux

package client

// adviseHugePages does nothing outside Linux.
func adviseHugePages([]userSlot) {}
