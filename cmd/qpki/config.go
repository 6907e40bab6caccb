package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// configAliases are config keys whose flag has another name.
var configAliases = map[string]string{"publish_crl": "crl-publish"}

// applyConfigFile sets a command's flags from a YAML file of key: value
// pairs, a key being a flag's name (ca-dir) or the same with underscores
// (ca_dir); a list sets a list flag. Flags given on the command line win,
// so every flag can live in the file and any can be overridden at start.
func applyConfigFile(cmd *cobra.Command, path string) error {
	if path == "" {
		return nil
	}
	data, err := readLimited(path, 1<<20)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if len(doc.Content) == 0 {
		return nil // an empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("%s: want a mapping of setting: value", path)
	}
	fs := cmd.Flags()
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i], root.Content[i+1]
		name, ok := configAliases[key.Value]
		if !ok {
			name = strings.ReplaceAll(key.Value, "_", "-")
		}
		f := fs.Lookup(name)
		if f == nil || name == "config" || name == "help" {
			return fmt.Errorf("%s line %d: unknown setting %q (settings are the flags of `qpki %s`)", path, key.Line, key.Value, cmd.Name())
		}
		if f.Changed {
			continue // the command line wins
		}
		if err := setFlag(fs, f, val); err != nil {
			return fmt.Errorf("%s line %d: %s: %v", path, val.Line, key.Value, err)
		}
	}
	return nil
}

func setFlag(fs *pflag.FlagSet, f *pflag.Flag, val *yaml.Node) error {
	switch val.Kind {
	case yaml.ScalarNode:
		return fs.Set(f.Name, val.Value)
	case yaml.SequenceNode:
		if !strings.HasSuffix(f.Value.Type(), "Slice") && !strings.HasSuffix(f.Value.Type(), "Array") {
			return fmt.Errorf("a list, but --%s takes one value", f.Name)
		}
		if len(val.Content) == 0 {
			return nil
		}
		for _, item := range val.Content {
			if item.Kind != yaml.ScalarNode {
				return fmt.Errorf("list items must be plain values")
			}
			if err := fs.Set(f.Name, item.Value); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("want a value or a list of values")
}
