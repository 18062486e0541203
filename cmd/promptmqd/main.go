// Command promptmqd is the PromptMQ MQTT broker. It owns the command line (urfave/cli/v2): the flags
// that override every configuration key, the subcommands check-config and version, the start-up log
// line and the signals that end the process; serve wires the configuration into the engine.
//
// Exit status: 0 after a clean stop, 1 when the broker fails, 2 for a bad command line or configuration.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/x0a1b/promptmq/conf"
)

// version and commit are set by the Makefile with -ldflags "-X main.version=... -X main.commit=...".
// They are package variables only because -X can set nothing else; nothing assigns them at run time.
var (
	version = "dev"
	commit  = "unknown"
)

const (
	exitFailure = 1 // the broker failed while running
	exitUsage   = 2 // the command line or the configuration is wrong
)

// usageError marks an error the user fixes by changing what they typed or wrote: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	tuneRuntime()
	os.Exit(run(context.Background(), os.Args, os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := newApp(stdout, stderr).RunContext(ctx, args)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "promptmqd:", err)
	var verr *conf.ValidationError
	var uerr usageError
	if errors.As(err, &verr) || errors.As(err, &uerr) {
		return exitUsage
	}
	return exitFailure
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:  "promptmqd",
		Usage: "the PromptMQ MQTT broker (MQTT 5.0, 3.1.1 and 3.1)",
		Description: "With no command, promptmqd runs the broker. Configuration comes from the built-in defaults,\n" +
			"then the TOML file given with -c, then the flags, each overriding the one before. Every\n" +
			"configuration key has a flag; flags may also follow the command name.",
		UsageText:       "promptmqd [flags] [command [flags]]",
		Flags:           configFlags(),
		Action:          runBroker(stderr),
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		// Errors are printed and mapped to exit statuses by run; urfave must not exit by itself.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		Commands: []*cli.Command{
			{
				Name:      "check-config",
				Usage:     "validate the configuration and print the effective configuration as TOML",
				UsageText: "promptmqd check-config -c FILE [flags]",
				Flags:     configFlags(),
				Action:    checkConfig(stdout),
				OnUsageError: func(_ *cli.Context, err error, _ bool) error {
					return usageError{err}
				},
			},
			passwdCommand(os.Stdin, stdout),
			{
				Name:  "version",
				Usage: "print the version, the commit and the Go version",
				Action: func(*cli.Context) error {
					_, err := fmt.Fprintf(stdout, "promptmqd %s\ncommit %s\n%s\n", version, commit, runtime.Version())
					return err
				},
			},
		},
	}
}

// checkConfig loads the configuration like the broker would and prints the result; a bad
// configuration returns its *conf.ValidationError, printed by run with exit status 2.
func checkConfig(stdout io.Writer) cli.ActionFunc {
	return func(c *cli.Context) error {
		if err := noArguments(c); err != nil {
			return err
		}
		cfg, err := loadConfig(c)
		if err != nil {
			return err
		}
		text, err := cfg.TOML()
		if err != nil {
			return err
		}
		_, err = stdout.Write(text)
		return err
	}
}

// runBroker loads the configuration, logs the start-up line and serves until SIGINT or SIGTERM;
// SIGHUP reloads what may change while running (see reloader).
func runBroker(stderr io.Writer) cli.ActionFunc {
	return func(c *cli.Context) error {
		if err := noArguments(c); err != nil {
			return err
		}
		cfg, err := loadConfig(c)
		if err != nil {
			return err
		}
		logger, level, err := newReloadableLogger(stderr, &cfg)
		if err != nil {
			return usageError{err}
		}
		hup := newReloader(func() (conf.Config, error) { return loadConfig(c) }, level, logger)
		defer hup.stop()
		// The handler is installed before the start-up line, so a signal sent by anyone who has seen
		// that line is always a graceful shutdown.
		ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
		defer stop()
		go func() {
			<-ctx.Done()
			// A second signal kills the process at once, in case shutdown hangs.
			stop()
		}()
		logStartup(logger, &cfg)
		if err := serve(ctx, &cfg, logger, hup); err != nil {
			logger.Error("broker failed", "err", err)
			return fmt.Errorf("broker: %w", err)
		}
		logger.Info("promptmqd stopped")
		return nil
	}
}

func noArguments(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q; run promptmqd --help", c.Args().First())}
	}
	return nil
}
