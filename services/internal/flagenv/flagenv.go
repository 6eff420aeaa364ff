// Package flagenv gives the programs' flags their defaults from environment variables, so
// that every setting is a flag with a variable, read the same way in each program.
package flagenv

import (
	"flag"
	"fmt"
)

// Defaults returns env: env(name, def) is the variable's value, or def when it is unset or
// empty. Use it for the defaults of string flags.
func Defaults(getenv func(string) string) func(name, def string) string {
	return func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
}

// Set sets each flag of vars (flag name to variable name) whose variable is set. Typed
// values go through the flag package, so a bad one gets the same error as a bad flag,
// prefixed with the variable: REVOCAST_LEEWAY="soon": invalid value...
func Set(fs *flag.FlagSet, getenv func(string) string, vars map[string]string) error {
	for flagName, envName := range vars {
		if v := getenv(envName); v != "" {
			if err := fs.Set(flagName, v); err != nil {
				return fmt.Errorf("%s=%q: %w", envName, v, err)
			}
		}
	}
	return nil
}
