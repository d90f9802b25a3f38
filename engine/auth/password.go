package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/text/unicode/norm"
)

// Params are argon2id's cost parameters. They are recorded in each hash, so they can be
// raised later without invalidating existing passwords.
type Params struct {
	// Memory in KiB.
	Memory     uint32
	Iterations uint32
	Threads    uint8
	// KeyLen is the length of the derived key in bytes.
	KeyLen uint32
	// SaltLen is the length of the random salt in bytes.
	SaltLen uint32
}

// DefaultParams returns OWASP's first recommendation for argon2id: 19 MiB, two
// iterations, one thread; a 32-byte key and a 16-byte salt.
func DefaultParams() Params {
	return Params{Memory: 19 * 1024, Iterations: 2, Threads: 1, KeyLen: 32, SaltLen: 16}
}

// Bounds on parameters, also applied to hashes read back, so that a corrupt hash cannot
// make a verification allocate gigabytes or loop for minutes.
const (
	maxMemory     = 1 << 21 // 2 GiB
	maxIterations = 64
	minKeyLen     = 16
	maxKeyLen     = 128
	minSaltLen    = 8
	maxSaltLen    = 64
)

// validate reports parameters outside the accepted bounds.
func (p Params) validate() error {
	switch {
	case p.Threads == 0:
		return errors.New("argon2 threads must be at least 1")
	case p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemory:
		return fmt.Errorf("argon2 memory must be between %d and %d KiB", 8*uint32(p.Threads), maxMemory)
	case p.Iterations == 0 || p.Iterations > maxIterations:
		return fmt.Errorf("argon2 iterations must be between 1 and %d", maxIterations)
	case p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen:
		return fmt.Errorf("argon2 key length must be between %d and %d bytes", minKeyLen, maxKeyLen)
	case p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen:
		return fmt.Errorf("argon2 salt length must be between %d and %d bytes", minSaltLen, maxSaltLen)
	}
	return nil
}

// b64 is the PHC string format's base64: standard alphabet, no padding.
var b64 = base64.RawStdEncoding

// HashPassword returns the argon2id hash of password in the PHC string format,
// $argon2id$v=19$m=MEMORY,t=ITERATIONS,p=THREADS$SALT$HASH, with a fresh random salt.
// The password is normalized to Unicode NFC first, so that the same characters typed on
// different systems give the same hash.
func HashPassword(password string, p Params) (string, error) {
	if err := p.validate(); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	salt := make([]byte, p.SaltLen)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails on Linux.
	key := argon2.IDKey([]byte(norm.NFC.String(password)), salt, p.Iterations, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Iterations, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// errMalformedHash reports a stored hash that is not an argon2id PHC string.
var errMalformedHash = errors.New("malformed password hash")

// VerifyPassword reports whether password matches encoded, a hash made by HashPassword
// with any parameters. The comparison takes constant time. An error means encoded is
// not a valid argon2id hash.
func VerifyPassword(encoded, password string) (bool, error) {
	p, salt, want, err := decodeHash(encoded)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(norm.NFC.String(password)), salt, p.Iterations, p.Memory, p.Threads, p.KeyLen)
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// decodeHash parses a PHC argon2id string.
func decodeHash(encoded string) (p Params, salt, key []byte, err error) {
	parts := strings.Split(encoded, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, errMalformedHash
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, fmt.Errorf("unsupported argon2 version %q: %w", parts[2], errMalformedHash)
	}
	var m, t, threads uint64
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return p, nil, nil, errMalformedHash
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return p, nil, nil, errMalformedHash
		}
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			threads = n
		default:
			return p, nil, nil, errMalformedHash
		}
	}
	if salt, err = b64.DecodeString(parts[4]); err != nil {
		return p, nil, nil, errMalformedHash
	}
	if key, err = b64.DecodeString(parts[5]); err != nil {
		return p, nil, nil, errMalformedHash
	}
	if threads > 255 {
		return p, nil, nil, errMalformedHash
	}
	p = Params{Memory: uint32(m), Iterations: uint32(t), Threads: uint8(threads),
		KeyLen: uint32(len(key)), SaltLen: uint32(len(salt))}
	if err := p.validate(); err != nil {
		return p, nil, nil, fmt.Errorf("%w: %w", errMalformedHash, err)
	}
	return p, salt, key, nil
}

// Requirements describe the password policy, for clients to show before a user types.
type Requirements struct {
	// MinLength and MaxLength count characters (Unicode code points).
	MinLength int
	MaxLength int
	// Upper, Lower, Digit and Special require at least one character of the class.
	// Special is anything that is neither a letter nor a digit, spaces included.
	Upper, Lower, Digit, Special bool
	// History is how many of the user's previous passwords (the current one included)
	// a new password must differ from.
	History int
	// NotUsername forbids the username itself (regardless of case).
	NotUsername bool
}

// PasswordRequirements returns the policy CheckPolicy enforces.
func PasswordRequirements() Requirements {
	return Requirements{MinLength: 12, MaxLength: 1024, Upper: true, Lower: true, Digit: true,
		Special: true, History: 5, NotUsername: true}
}

// PolicyError lists the rules a password does not meet. It matches ErrWeakPassword.
type PolicyError struct {
	// Unmet are the unmet rules in plain English, such as "at least 12 characters".
	Unmet []string
}

// Error lists the unmet rules.
func (e *PolicyError) Error() string {
	return "password does not meet the policy: it needs " + strings.Join(e.Unmet, ", ")
}

// Is makes errors.Is(err, ErrWeakPassword) true.
func (e *PolicyError) Is(target error) bool { return target == ErrWeakPassword }

// CheckPolicy returns a *PolicyError listing every rule of PasswordRequirements (except
// the history, which needs the database) that password does not meet, or nil.
func CheckPolicy(username, password string) error {
	r := PasswordRequirements()
	password = norm.NFC.String(password)
	var upper, lower, digit, special bool
	for _, c := range password {
		switch {
		case unicode.IsUpper(c):
			upper = true
		case unicode.IsLower(c):
			lower = true
		case unicode.IsDigit(c):
			digit = true
		case !unicode.IsLetter(c) && !unicode.IsNumber(c):
			special = true
		}
	}
	var unmet []string
	if n := utf8.RuneCountInString(password); n < r.MinLength {
		unmet = append(unmet, fmt.Sprintf("at least %d characters", r.MinLength))
	} else if n > r.MaxLength {
		unmet = append(unmet, fmt.Sprintf("at most %d characters", r.MaxLength))
	}
	if !upper {
		unmet = append(unmet, "an uppercase letter")
	}
	if !lower {
		unmet = append(unmet, "a lowercase letter")
	}
	if !digit {
		unmet = append(unmet, "a digit")
	}
	if !special {
		unmet = append(unmet, "a special character (neither letter nor digit)")
	}
	if username != "" && strings.EqualFold(password, username) {
		unmet = append(unmet, "to differ from the username")
	}
	if len(unmet) > 0 {
		return &PolicyError{Unmet: unmet}
	}
	return nil
}

// randomToken returns 32 random bytes, base64url-encoded without padding.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux.
	return base64.RawURLEncoding.EncodeToString(b)
}

// Alphabets of generated passwords; look-alikes (0/O, 1/l/I) are left out because the
// password is read off a console and typed.
const (
	genUpper   = "ABCDEFGHJKLMNPQRSTUVWXYZ"
	genLower   = "abcdefghijkmnopqrstuvwxyz"
	genDigit   = "23456789"
	genSpecial = "-_.!@#%+=?"
)

// GeneratePassword returns a random 20-character password that meets the policy (about
// 120 bits of entropy).
func GeneratePassword() string {
	all := genUpper + genLower + genDigit + genSpecial
	for {
		b := make([]byte, 20)
		for i := range b {
			n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(all)))) // never fails on Linux
			b[i] = all[n.Int64()]
		}
		if CheckPolicy("", string(b)) == nil {
			return string(b)
		}
	}
}
