package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// credentialsFile is the name of the file cds login writes, in credentialsDir.
const credentialsFile = "credentials.json"

// credential is what cds keeps of one login: the token pair and when the access
// token expires. It is what credentials.json holds per server.
type credential struct {
	Server       string    `json:"server"`
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	ExpiresAt    time.Time `json:"expires_at"`
	Username     string    `json:"username"`
}

// credFile is the content of credentials.json: one login per server, keyed by the
// server's normalised base URL, so that one user can work with several servers.
type credFile struct {
	Servers map[string]credential `json:"servers"`
}

// credStore reads and writes credentials.json. Writes replace the file atomically
// (temporary file, then rename), under a lock that concurrent cds processes share,
// so that two refreshes never race (a refresh token is valid once, and using it
// twice would end the login).
type credStore struct {
	path string
	// warn receives a warning about a file others can read; nil to stay silent.
	warn func(string)
}

// credentialsDir returns the directory of credentials.json: $XDG_CONFIG_HOME/cds,
// or ~/.config/cds when XDG_CONFIG_HOME is unset (or relative, which the XDG
// specification says to ignore).
func credentialsDir() (string, error) {
	base := os.Getenv("XDG_CONFIG_HOME")
	if !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find the configuration directory for credentials: %w", err)
		}
		base = filepath.Join(home, ".config")
	}
	return filepath.Join(base, "cds"), nil
}

// openCredStore returns the store in credentialsDir.
func (e *env) openCredStore() (*credStore, error) {
	dir, err := credentialsDir()
	if err != nil {
		return nil, &hintError{err: err, hint: "set XDG_CONFIG_HOME or HOME, or use CDS_TOKEN instead of cds login"}
	}
	return &credStore{path: filepath.Join(dir, credentialsFile), warn: func(msg string) {
		fmt.Fprintln(e.stderr, "cds: warning:", msg)
	}}, nil
}

// load reads the file; a missing file is an empty one.
func (s *credStore) load() (credFile, error) {
	cf := credFile{Servers: map[string]credential{}}
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return cf, nil
	}
	if err != nil {
		return cf, fmt.Errorf("read credentials: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 && s.warn != nil {
		s.warn(fmt.Sprintf("%s can be read by other users; run: chmod 600 %s", s.path, s.path))
	}
	if err := json.NewDecoder(f).Decode(&cf); err != nil {
		return cf, &hintError{err: fmt.Errorf("read credentials %s: %w", s.path, err),
			hint: "the file is damaged: delete it and run cds login again"}
	}
	if cf.Servers == nil {
		cf.Servers = map[string]credential{}
	}
	return cf, nil
}

// get returns the login stored for server, if there is one.
func (s *credStore) get(server string) (credential, bool, error) {
	cf, err := s.load()
	if err != nil {
		return credential{}, false, err
	}
	c, ok := cf.Servers[server]
	return c, ok && c.AccessToken != "", nil
}

// update runs change on the file's content under the lock and writes the result
// when change reports a change. An error from change is returned as is.
func (s *credStore) update(change func(cf *credFile) (bool, error)) error {
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create the credentials directory: %w", err)
	}
	// The directory holds secrets only: keep it private even if it existed.
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("protect the credentials directory: %w", err)
	}
	unlock, err := lockFile(s.path + ".lock")
	if err != nil {
		return fmt.Errorf("lock credentials: %w", err)
	}
	defer unlock()
	cf, err := s.load()
	if err != nil {
		return err
	}
	changed, err := change(&cf)
	if err != nil || !changed {
		return err
	}
	data, err := json.MarshalIndent(cf, "", "  ")
	if err != nil {
		return fmt.Errorf("encode credentials: %w", err)
	}
	return writeFileAtomic(s.path, append(data, '\n'))
}

// put stores c as the login to c.Server.
func (s *credStore) put(c credential) error {
	return s.update(func(cf *credFile) (bool, error) {
		cf.Servers[c.Server] = c
		return true, nil
	})
}

// remove deletes the login to server and reports whether there was one.
func (s *credStore) remove(server string) (bool, error) {
	found := false
	err := s.update(func(cf *credFile) (bool, error) {
		_, found = cf.Servers[server]
		delete(cf.Servers, server)
		return found, nil
	})
	return found, err
}

// writeFileAtomic writes data to path with mode 0600: into a temporary file in the
// same directory first, synced, then renamed over path, so that a reader sees the
// old or the new content, never a part, and a crash leaves no half-written file.
func writeFileAtomic(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// CreateTemp makes the file 0600 already; Chmod says so where it matters.
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	return nil
}
