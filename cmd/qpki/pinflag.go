package main

import (
	"errors"
	"strings"

	"github.com/spf13/cobra"
)

// refusePINFlag turns "unknown flag: --pin" (or --hsm-pin, --so-pin, …)
// into an error that says why there is no such flag: a PIN on the command
// line ends up in shell history and process listings. The value is never
// echoed.
func refusePINFlag(_ *cobra.Command, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		name = strings.ToLower(name)
		if name == "pin" || strings.HasSuffix(name, "-pin") || strings.HasPrefix(name, "pin-") && name != "pin-env" {
			return errors.New("--" + name + ": a PIN is never taken from a flag; put it in the environment variable the HSM config's pin_env names, or run on a terminal to be prompted")
		}
	}
	return err
}
