package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// errNoInput reports that standard input ended before a line that cds needed.
var errNoInput = errors.New("standard input ended")

// terminalFD returns the file descriptor of standard input when it is a terminal.
func (e *env) terminalFD() (int, bool) {
	f, ok := e.stdin.(*os.File)
	if !ok {
		return 0, false
	}
	fd := int(f.Fd())
	return fd, term.IsTerminal(fd)
}

// interactive reports whether standard input is a terminal, where a person types.
func (e *env) interactive() bool {
	_, ok := e.terminalFD()
	return ok
}

// readLine reads one line from standard input, without its line ending. On a
// terminal it shows prompt on stderr first; from a pipe it reads silently, so that
// scripts can feed the answers.
func (e *env) readLine(prompt string) (string, error) {
	if e.interactive() {
		fmt.Fprint(e.stderr, prompt)
	}
	if e.lines == nil {
		e.lines = bufio.NewReader(e.stdin)
	}
	line, err := e.lines.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		if errors.Is(err, io.EOF) {
			return "", errNoInput
		}
		return "", fmt.Errorf("read standard input: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// readSecret reads a password. On a terminal it shows prompt on stderr and reads
// without echo; otherwise it reads one line, as readLine does.
func (e *env) readSecret(prompt string) (string, error) {
	fd, ok := e.terminalFD()
	if !ok {
		return e.readLine(prompt)
	}
	fmt.Fprint(e.stderr, prompt)
	b, err := term.ReadPassword(fd)
	// The user's Enter was not echoed either.
	fmt.Fprintln(e.stderr)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	return string(b), nil
}

// readNewPassword reads a new password. On a terminal it asks twice and fails when
// the two differ; from a pipe it reads one line. An empty password is refused.
func (e *env) readNewPassword(prompt string) (string, error) {
	pw, err := e.readSecret(prompt)
	if err != nil {
		return "", err
	}
	if pw == "" {
		return "", errors.New("the password is empty")
	}
	if !e.interactive() {
		return pw, nil
	}
	again, err := e.readSecret("Repeat it: ")
	if err != nil {
		return "", err
	}
	if again != pw {
		return "", errors.New("the two passwords differ")
	}
	return pw, nil
}

// confirm asks a yes/no question and reports whether the answer was yes. No answer
// (an empty line, or the end of standard input) is no.
func (e *env) confirm(question string) (bool, error) {
	// The question goes out even from a pipe: a script that feeds "y" should show
	// what it agreed to in its log.
	if !e.interactive() {
		fmt.Fprint(e.stderr, question+" [y/N] ")
		defer fmt.Fprintln(e.stderr)
	}
	answer, err := e.readLine(question + " [y/N] ")
	if errors.Is(err, errNoInput) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}
