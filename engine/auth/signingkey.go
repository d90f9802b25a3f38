package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// SigningKeyFile is the name of the generated signing key in the data directory.
const SigningKeyFile = "jwt.key"

// LoadOrCreateSigningKey returns the HS256 key for access tokens. When env (the value of
// CDS_JWT_SECRET) is not empty, it is the key and must be at least 32 bytes. Otherwise
// the key is the content of <dataDir>/jwt.key, which must be a regular file readable by
// its owner only (mode 0600 or 0400); when the file does not exist, 32 random bytes are
// written to it in hex, atomically and with mode 0600, so that every replica or restart
// sharing the data directory uses the same key. The file's content, copied into
// CDS_JWT_SECRET, gives the same key.
func LoadOrCreateSigningKey(dataDir, env string) ([]byte, error) {
	if env != "" {
		if len(env) < minSigningKeyLen {
			return nil, fmt.Errorf("CDS_JWT_SECRET has %d bytes, need at least %d", len(env), minSigningKeyLen)
		}
		return []byte(env), nil
	}
	path := filepath.Join(dataDir, SigningKeyFile)
	key, err := readSigningKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir for the signing key: %w", err)
	}
	if err := writeNewKey(path); err != nil {
		return nil, err
	}
	// Read back what is there: another process may have created it first.
	return readSigningKey(path)
}

// readSigningKey reads and checks a key file.
func readSigningKey(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("signing key %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s has mode %04o; it must be readable by its owner only (chmod 600)", path, perm)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	key := strings.TrimSpace(string(b))
	if len(key) < minSigningKeyLen {
		return nil, fmt.Errorf("signing key %s has %d bytes, need at least %d", path, len(key), minSigningKeyLen)
	}
	return []byte(key), nil
}

// writeNewKey writes a fresh random key to path unless the file exists. The key is
// written to a temporary file first and linked into place, so that a reader never sees a
// partial key and a concurrent creator's key is never replaced.
func writeNewKey(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".jwt.key-*")
	if err != nil {
		return fmt.Errorf("create signing key: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the link, only the temporary name goes
	raw := make([]byte, 32)
	_, _ = rand.Read(raw) // crypto/rand.Read never fails on Linux.
	_, err = tmp.WriteString(hex.EncodeToString(raw) + "\n")
	if err == nil {
		err = tmp.Chmod(0o600) // CreateTemp's mode already; said again for clarity
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write signing key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("install signing key: %w", err)
	}
	return nil
}
