package main

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/x0a1b/promptmq/engine/access"
)

// passwdCommand is `promptmqd passwd [-c] FILE USER`: it creates or updates one entry of a
// password file in Mosquitto 2.x format ($7$, PBKDF2-SHA512), so the file also works with
// Mosquitto and its mosquitto_passwd.
func passwdCommand(stdin io.Reader, stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "passwd",
		Usage:     "create or update a user's entry in a password file (Mosquitto 2.x format)",
		UsageText: "promptmqd passwd [-c] FILE USER   (the password is asked twice on a terminal, else read as one line)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "c", Usage: "create the file, replacing one that exists"},
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usageError{errors.New("passwd needs FILE and USER; run promptmqd passwd --help")}
			}
			file, user := c.Args().Get(0), c.Args().Get(1)
			password, err := readPassword(stdin, stdout)
			if err != nil {
				return err
			}
			hash, err := access.HashPassword(password, rand.Reader)
			if err != nil {
				return err
			}
			if err := access.SetPassword(file, user, hash, c.Bool("c")); err != nil {
				return usageError{err}
			}
			return nil
		},
	}
}

// readPassword asks twice without echo when stdin is a terminal, and otherwise reads one
// line (for scripts: `echo secret | promptmqd passwd FILE USER`).
func readPassword(stdin io.Reader, prompt io.Writer) ([]byte, error) {
	if f, ok := stdin.(*os.File); ok && isTerminal(f) {
		first, err := readHidden(f, prompt, "Password: ")
		if err != nil {
			return nil, err
		}
		again, err := readHidden(f, prompt, "Reenter password: ")
		if err != nil {
			return nil, err
		}
		if string(first) != string(again) {
			return nil, usageError{errors.New("passwords do not match")}
		}
		return nonEmpty(first)
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return nil, usageError{fmt.Errorf("reading the password from standard input: %w", err)}
	}
	return nonEmpty([]byte(strings.TrimRight(line, "\r\n")))
}

func nonEmpty(p []byte) ([]byte, error) {
	if len(p) == 0 {
		return nil, usageError{errors.New("empty password")}
	}
	return p, nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// readHidden reads one line from the terminal f with echo turned off.
func readHidden(f *os.File, prompt io.Writer, text string) ([]byte, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("terminal: %w", err)
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return nil, fmt.Errorf("terminal: %w", err)
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	fmt.Fprint(prompt, text)
	defer fmt.Fprintln(prompt)
	var line []byte
	var b [1]byte
	for {
		n, err := f.Read(b[:])
		if n == 1 {
			if b[0] == '\n' || b[0] == '\r' {
				return line, nil
			}
			line = append(line, b[0])
		}
		if err != nil {
			return nil, fmt.Errorf("terminal: %w", err)
		}
	}
}
