package main

import (
	"errors"

	"github.com/urfave/cli/v2"

	"github.com/x0a1b/promptmq/conf"
)

const configFlag = "config"

// configFlags returns -c and one flag per configuration key. Each command gets its own flag values,
// because urfave records "was set" on the flag itself and the same flag is accepted both before and
// after the command name.
//
// Every value flag is a string parsed by conf, so a bad flag value is reported with its key path and
// the allowed values, together with the file's problems, exactly like the same mistake in the file.
func configFlags() []cli.Flag {
	defaults := conf.Default()
	flags := []cli.Flag{
		&cli.StringFlag{Name: configFlag, Aliases: []string{"c"}, Usage: "TOML configuration `FILE` (default: built-in defaults)"},
	}
	for _, k := range conf.Keys() {
		usage := k.Doc + " [" + k.Path + "]"
		category := "[" + k.Section() + "]"
		if k.Kind == conf.KindBool {
			flags = append(flags, &cli.BoolFlag{Name: k.Flag(), Usage: usage, Category: category,
				Value: k.Value(&defaults) == "true"})
			continue
		}
		flags = append(flags, &cli.StringFlag{Name: k.Flag(), Usage: usage, Category: category,
			DefaultText: k.Value(&defaults)})
	}
	return flags
}

// loadConfig loads the -c file and applies the flags set on the command line. Flags are gathered from
// the outermost command inward, so "promptmqd --bind A check-config --bind B" uses B.
func loadConfig(c *cli.Context) (conf.Config, error) {
	lineage := c.Lineage() // innermost first
	path := ""
	var overrides []conf.Override
	for i := len(lineage) - 1; i >= 0; i-- {
		ctx := lineage[i]
		set := map[string]bool{}
		for _, name := range ctx.LocalFlagNames() {
			set[name] = true
		}
		if set[configFlag] || set["c"] {
			path = ctx.String(configFlag)
		}
		for _, k := range conf.Keys() {
			if !set[k.Flag()] {
				continue
			}
			value := ctx.String(k.Flag())
			if k.Kind == conf.KindBool {
				value = "false"
				if ctx.Bool(k.Flag()) {
					value = "true"
				}
			}
			overrides = append(overrides, conf.Override{Key: k.Path, Value: value, Source: "--" + k.Flag()})
		}
	}
	cfg, err := conf.LoadWith(path, overrides...)
	var verr *conf.ValidationError
	if err != nil && !errors.As(err, &verr) {
		err = usageError{err} // an unreadable file is a configuration mistake too: exit status 2
	}
	return cfg, err
}
