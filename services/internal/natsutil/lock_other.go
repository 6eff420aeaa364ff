//go:build !unix

package natsutil

// lockDataDir does nothing where flock is not available: do not start two revocastd on one
// data directory there.
func lockDataDir(string) (func(), error) { return func() {}, nil }
