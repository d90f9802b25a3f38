package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cyberdevstudio/cds/server/client"
	"github.com/cyberdevstudio/cds/server/rpc"
)

// refreshEarly refreshes an access token this long before it expires, so that it
// does not expire between the check and the server reading it.
const refreshEarly = 30 * time.Second

// tokenSource says where a connection's credentials come from.
type tokenSource int

const (
	// fromNothing: no CDS_TOKEN and no stored login; calls go out anonymous.
	fromNothing tokenSource = iota
	// fromEnv: CDS_TOKEN, an API key or access token cds cannot refresh.
	fromEnv
	// fromStore: the login cds login stored for the server, refreshed as needed.
	fromStore
)

// conn is a client of one cdsd with the credentials cds found for it. It refreshes
// a stored login once when its access token has expired or the server refuses it.
type conn struct {
	e      *env
	c      *client.Client
	server string // normalised base URL, the key of the stored login
	source tokenSource
	store  *credStore     // set when source is fromStore
	cred   credential     // the stored login, when source is fromStore
	anon   *client.Client // sends no credentials: for refresh
	// refreshed is set after the one refresh a command may make.
	refreshed bool
}

// notLoggedInError reports that cdsd refused the stored login (or there is none)
// and that the user has to log in.
type notLoggedInError struct {
	server string
	// login is the command line that logs in to server.
	login string
	cause error
}

// Error names the server and the command to run.
func (e *notLoggedInError) Error() string {
	return fmt.Sprintf("not logged in to %s (or the session expired): run %s", e.server, e.login)
}

// Unwrap returns the server's answer, when there was one.
func (e *notLoggedInError) Unwrap() error { return e.cause }

// connect returns a connection to the server named by --server or CDS_SERVER with
// CDS_TOKEN when set, else with the login stored for that server.
func (e *env) connect() (*conn, error) { return e.dial(true) }

// connectStored is connect without CDS_TOKEN: with the stored login, if any.
func (e *env) connectStored() (*conn, error) { return e.dial(false) }

// dial builds the connection of connect and connectStored.
func (e *env) dial(useEnv bool) (*conn, error) {
	anon, err := e.newClient()
	if err != nil {
		return nil, err
	}
	k := &conn{e: e, c: anon, anon: anon, server: anon.BaseURL()}
	if tok := os.Getenv("CDS_TOKEN"); useEnv && tok != "" {
		k.c, k.source = anon.WithToken(tok), fromEnv
		return k, nil
	}
	store, err := e.openCredStore()
	if err != nil {
		return nil, err
	}
	cred, ok, err := store.get(k.server)
	if err != nil {
		return nil, err
	}
	if ok {
		k.c, k.source, k.store, k.cred = anon.WithToken(cred.AccessToken), fromStore, store, cred
	}
	return k, nil
}

// loginCommandLine is the cds login command for server.
func (e *env) loginCommandLine(server string) string {
	if server == DefaultServer {
		return "cds login"
	}
	return "cds login --server " + server
}

// notLoggedIn builds the error for a refused or missing login.
func (k *conn) notLoggedIn(cause error) error {
	return &notLoggedInError{server: k.server, login: k.e.loginCommandLine(k.server), cause: cause}
}

// call runs f with the connection's client. A stored login whose access token has
// expired is refreshed first; when the server answers Unauthorized, the login is
// refreshed once and f runs again. A login that cannot be refreshed, or none, is a
// *notLoggedInError. Other errors are returned as f returns them.
func (k *conn) call(ctx context.Context, f func(ctx context.Context, c *client.Client) error) error {
	if k.source == fromStore && !k.refreshed && !k.e.now().Add(refreshEarly).Before(k.cred.ExpiresAt) {
		if err := k.refresh(ctx); err != nil {
			return err
		}
	}
	err := k.run(ctx, f)
	if !rpc.IsCode(err, rpc.CodeUnauthorized) {
		return err
	}
	switch {
	case k.source == fromEnv:
		return &hintError{err: fmt.Errorf("cdsd at %s refused CDS_TOKEN: %w", k.server, err),
			hint: "check the key (cds admin keys list), or unset CDS_TOKEN to use the login of cds login"}
	case k.source == fromNothing || k.refreshed:
		return k.notLoggedIn(err)
	}
	if err := k.refresh(ctx); err != nil {
		return err
	}
	if err = k.run(ctx, f); rpc.IsCode(err, rpc.CodeUnauthorized) {
		return k.notLoggedIn(err)
	}
	return err
}

// run runs f once, bounded by the per-call timeout when the command has one.
func (k *conn) run(ctx context.Context, f func(ctx context.Context, c *client.Client) error) error {
	ctx, cancel := k.e.callContext(ctx)
	defer cancel()
	return f(ctx, k.c)
}

// errLoggedOut reports that the stored login disappeared while cds ran (another cds
// logged out).
var errLoggedOut = errors.New("the login was removed")

// refresh exchanges the stored refresh token for a new pair and stores it. Under
// the credentials lock it first looks whether another cds process has refreshed
// already, and then takes that pair instead of using a refresh token that is no
// longer valid (which would end the login).
func (k *conn) refresh(ctx context.Context) error {
	k.refreshed = true
	err := k.store.update(func(cf *credFile) (bool, error) {
		cur, ok := cf.Servers[k.server]
		if !ok || cur.RefreshToken == "" {
			return false, errLoggedOut
		}
		if cur.RefreshToken != k.cred.RefreshToken && k.e.now().Add(refreshEarly).Before(cur.ExpiresAt) {
			k.cred = cur
			return false, nil
		}
		var t rpc.TokenResponse
		err := k.run(ctx, func(ctx context.Context, _ *client.Client) error {
			var err error
			t, err = k.anon.Refresh(ctx, cur.RefreshToken)
			return err
		})
		if err != nil {
			return false, err
		}
		cur.AccessToken, cur.RefreshToken = t.AccessToken, t.RefreshToken
		cur.ExpiresAt = k.e.now().Add(time.Duration(t.ExpiresIn) * time.Second)
		cf.Servers[k.server] = cur
		k.cred = cur
		return true, nil
	})
	switch {
	case err == nil:
		k.c = k.anon.WithToken(k.cred.AccessToken)
		return nil
	case errors.Is(err, errLoggedOut), rpc.IsCode(err, rpc.CodeUnauthorized):
		return k.notLoggedIn(err)
	}
	return err
}
