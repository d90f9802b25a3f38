package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cyberdevstudio/cds/server/client"
	"github.com/cyberdevstudio/cds/server/rpc"
)

var loginCommand = &command{
	name:    "login",
	summary: "log in to cdsd; the other commands then use the session",
	help: `Log in to cdsd (--server, env CDS_SERVER) and keep the session in
$XDG_CONFIG_HOME/cds/credentials.json (default ~/.config/cds), readable by you
only, one entry per server. The other commands send its access token and renew
it with the refresh token when it expires; a session unused for 24 hours ends.

The username is asked for unless --username gives it; the password is read
without echo. When standard input is not a terminal, cds reads the username (if
not given) and the password as lines from it, for scripts:
  printf '%s\n' "$PASSWORD" | cds login --username ci

An account whose password was generated or reset (the first admin's, say) must
choose a new one: cds asks for it twice, changes it and logs in with it.
CDS_TOKEN, when set, wins over the stored login.`,
	prompts: true,
	flags: func(fs *flag.FlagSet, f *cmdFlags) {
		fs.StringVar(&f.username, "username", "", "log in as `NAME` (asked for when missing)")
	},
	run: runLogin,
}

var logoutCommand = &command{
	name:    "logout",
	summary: "end the session of cds login and forget it",
	help: `End the session that cds login opened with the server (--server, env
CDS_SERVER) and delete it from the credentials file. With --all, end every
session of your account, on every device. When cdsd cannot be reached, the
local copy is deleted anyway and the session ends by itself within 24 hours.`,
	flags: func(fs *flag.FlagSet, f *cmdFlags) {
		fs.BoolVar(&f.all, "all", false, "end all your sessions, not only this one")
	},
	run: runLogout,
}

var whoamiCommand = &command{
	name:    "whoami",
	summary: "show who you are logged in as, your role and token balance",
	help: `Show the account cds acts as on the server (GET /auth/me): username, id,
role, token balance and the server. With --json, print the account as cdsd
returns it, with a "server" member.`,
	run: runWhoami,
}

func runLogin(ctx context.Context, e *env, _ []string) error {
	c, err := e.newClient()
	if err != nil {
		return err
	}
	server := c.BaseURL()
	store, err := e.openCredStore()
	if err != nil {
		return err
	}
	username := strings.TrimSpace(e.flags.username)
	if username == "" {
		if username, err = e.askUsername(store, server); err != nil {
			return err
		}
	}
	password, err := e.readSecret(fmt.Sprintf("Password for %s on %s: ", username, server))
	if err != nil {
		return inputError("read the password", err)
	}
	t, err := e.login(ctx, c, username, password)
	if err != nil {
		return err
	}
	if t.MustChangePassword {
		first := c.WithToken(t.AccessToken)
		if password, err = e.changeInitialPassword(ctx, first, username, password); err != nil {
			return err
		}
		if t, err = e.login(ctx, c, username, password); err != nil {
			return err
		}
		// The first session was good only for the change; end it.
		_ = e.withCallContext(ctx, first.Logout)
		if t.MustChangePassword {
			return &hintError{err: fmt.Errorf("cdsd at %s still asks for a new password of %s", server, username),
				hint: "ask an admin to check the account"}
		}
	}
	cred := credential{Server: server, AccessToken: t.AccessToken, RefreshToken: t.RefreshToken,
		ExpiresAt: e.now().Add(time.Duration(t.ExpiresIn) * time.Second), Username: username}
	if err := store.put(cred); err != nil {
		return &hintError{err: err, hint: "check the permissions of " + store.path + ", or use CDS_TOKEN instead"}
	}
	if e.opts.json {
		return e.writeJSON(loginReport{Server: server, Username: username, ExpiresAt: cred.ExpiresAt, Credentials: store.path})
	}
	_, err = fmt.Fprintf(e.stdout, "Logged in to %s as %s.\n", server, username)
	return err
}

// loginReport is what cds login --json prints: never the tokens.
type loginReport struct {
	Server   string `json:"server"`
	Username string `json:"username"`
	// ExpiresAt is when the access token expires; cds renews it as needed.
	ExpiresAt   time.Time `json:"expires_at"`
	Credentials string    `json:"credentials_file"`
}

// askUsername asks for the username, offering the one stored for server.
func (e *env) askUsername(store *credStore, server string) (string, error) {
	prev, _, err := store.get(server)
	if err != nil {
		return "", err
	}
	prompt := "Username: "
	if prev.Username != "" {
		prompt = fmt.Sprintf("Username [%s]: ", prev.Username)
	}
	name, err := e.readLine(prompt)
	if err != nil {
		return "", inputError("read the username", err)
	}
	if name = strings.TrimSpace(name); name == "" {
		name = prev.Username
	}
	if name == "" {
		return "", &UsageError{Msg: "no username given", Command: "login"}
	}
	return name, nil
}

// inputError explains a failure to read what the user should have typed.
func inputError(action string, err error) error {
	if errors.Is(err, errNoInput) {
		return &hintError{err: fmt.Errorf("%s: %w", action, err),
			hint: "type it when asked, or pipe it to cds on standard input"}
	}
	return fmt.Errorf("%s: %w", action, err)
}

// withCallContext runs f bounded by the per-call timeout.
func (e *env) withCallContext(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := e.callContext(ctx)
	defer cancel()
	return f(ctx)
}

// login logs in and explains a refusal.
func (e *env) login(ctx context.Context, c *client.Client, username, password string) (rpc.TokenResponse, error) {
	var t rpc.TokenResponse
	err := e.withCallContext(ctx, func(ctx context.Context) error {
		var err error
		t, err = c.Login(ctx, username, password)
		return err
	})
	if err == nil {
		return t, nil
	}
	action := fmt.Sprintf("log in to %s as %s", c.BaseURL(), username)
	var re *rpc.Error
	if errors.As(err, &re) {
		switch re.Code {
		case rpc.CodeUnauthorized:
			return t, &hintError{err: fmt.Errorf("%s: %w", action, err),
				hint: "check the username and the password; 5 failed logins in a row lock the account for 15 minutes"}
		case rpc.CodeRateLimited:
			hint := "wait, then try again"
			if re.Data != nil && re.Data.RetryAfterSeconds > 0 {
				at := e.now().Add(time.Duration(re.Data.RetryAfterSeconds) * time.Second)
				hint = fmt.Sprintf("try again in %s (at %s)", (time.Duration(re.Data.RetryAfterSeconds) * time.Second).String(), at.Local().Format("15:04:05"))
			}
			return t, &hintError{err: fmt.Errorf("%s: %w", action, err), hint: hint}
		case rpc.CodeForbidden:
			return t, &hintError{err: fmt.Errorf("%s: %w", action, err), hint: "ask an admin to enable the account"}
		}
	}
	return t, serverError(c.BaseURL(), "log in", err)
}

// changeInitialPassword asks for a new password and sets it, with the tokens of a
// login that must change its password. It returns the new password.
func (e *env) changeInitialPassword(ctx context.Context, c *client.Client, username, old string) (string, error) {
	fmt.Fprintf(e.stderr, "The password of %s must be changed before the account can be used.\n", username)
	var req rpc.PasswordRequirements
	reqErr := e.withCallContext(ctx, func(ctx context.Context) error {
		var err error
		req, err = c.PasswordRequirements(ctx)
		return err
	})
	if reqErr == nil {
		fmt.Fprintln(e.stderr, "Choose one with "+describeRequirements(req)+".")
	}
	pw, err := e.readNewPassword("New password: ")
	if err != nil {
		return "", &hintError{err: fmt.Errorf("change the password of %s: %w", username, err),
			hint: "run cds login again and type the new password twice"}
	}
	err = e.withCallContext(ctx, func(ctx context.Context) error { return c.ChangePassword(ctx, old, pw) })
	if rpc.IsCode(err, rpc.CodeInvalidParams) {
		return "", &hintError{err: fmt.Errorf("change the password of %s: %w", username, err),
			hint: "run cds login again and choose a password that meets the rules"}
	}
	if err != nil {
		return "", serverError(c.BaseURL(), "change the password of "+username, err)
	}
	fmt.Fprintln(e.stderr, "Password changed.")
	return pw, nil
}

// describeRequirements says the password policy in words, e.g. "at least 12
// characters, with an upper-case letter, a digit and a special character".
func describeRequirements(r rpc.PasswordRequirements) string {
	s := fmt.Sprintf("at least %d characters", r.MinLength)
	if r.MaxLength > 0 {
		s = fmt.Sprintf("%d to %d characters", r.MinLength, r.MaxLength)
	}
	var with []string
	for _, c := range []struct {
		on   bool
		name string
	}{{r.Upper, "an upper-case letter"}, {r.Lower, "a lower-case letter"}, {r.Digit, "a digit"}, {r.Special, "a special character"}} {
		if c.on {
			with = append(with, c.name)
		}
	}
	if len(with) > 0 {
		s += ", with " + joinAnd(with)
	}
	var not []string
	if r.NotUsername {
		not = append(not, "the username")
	}
	if r.History > 0 {
		not = append(not, fmt.Sprintf("one of the last %d passwords", r.History))
	}
	if len(not) > 0 {
		s += ", not " + strings.Join(not, " nor ")
	}
	return s
}

// joinAnd joins words as "a, b and c".
func joinAnd(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}

func runLogout(ctx context.Context, e *env, _ []string) error {
	k, err := e.connectStored()
	if err != nil {
		return err
	}
	if k.source != fromStore {
		if e.opts.json {
			return e.writeJSON(logoutReport{Server: k.server})
		}
		_, err := fmt.Fprintf(e.stderr, "Not logged in to %s.\n", k.server)
		return err
	}
	action, logout := "log out", (*client.Client).Logout
	if e.flags.all {
		action, logout = "log out of all sessions", (*client.Client).LogoutAll
	}
	callErr := k.call(ctx, func(ctx context.Context, c *client.Client) error { return logout(c, ctx) })
	var gone *notLoggedInError
	if errors.As(callErr, &gone) {
		// The session had ended already: there is nothing left to end.
		callErr = nil
	}
	if _, err := k.store.remove(k.server); err != nil {
		return err
	}
	if callErr != nil {
		callErr = serverError(k.server, action, callErr)
		if e.flags.all {
			return fmt.Errorf("forgot the login, but the other sessions may still be open: %w", callErr)
		}
		fmt.Fprintf(e.stderr, "cds: warning: the session on the server ends by itself within 24 hours: %v\n", callErr)
	}
	if e.opts.json {
		return e.writeJSON(logoutReport{Server: k.server, LoggedOut: true, All: e.flags.all})
	}
	_, err = fmt.Fprintf(e.stdout, "Logged out of %s.\n", k.server)
	return err
}

// logoutReport is what cds logout --json prints.
type logoutReport struct {
	Server string `json:"server"`
	// LoggedOut is false when there was no stored login.
	LoggedOut bool `json:"logged_out"`
	All       bool `json:"all,omitempty"`
}

// whoami is what cds whoami --json prints.
type whoami struct {
	Server string `json:"server"`
	rpc.Me
}

func runWhoami(ctx context.Context, e *env, _ []string) error {
	k, err := e.connect()
	if err != nil {
		return err
	}
	var me rpc.Me
	err = k.call(ctx, func(ctx context.Context, c *client.Client) error {
		var err error
		me, err = c.Me(ctx)
		return err
	})
	if err != nil {
		return serverError(k.server, "read your account", err)
	}
	if e.opts.json {
		return e.writeJSON(whoami{Server: k.server, Me: me})
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "user\t%s (id %d)\n", me.Username, me.ID)
	fmt.Fprintf(tw, "role\t%s\n", me.Role)
	fmt.Fprintf(tw, "balance\t%d credits\n", me.TokenBalance)
	fmt.Fprintf(tw, "server\t%s\n", k.server)
	switch {
	case k.source == fromEnv:
		fmt.Fprintf(tw, "credentials\tCDS_TOKEN\n")
	case me.SessionID != "":
		fmt.Fprintf(tw, "session\t%s\n", me.SessionID)
	}
	if me.MustChangePassword {
		fmt.Fprintf(tw, "password\tmust be changed: run cds login\n")
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write account: %w", err)
	}
	return nil
}
