package auth

// DummyHash exposes the hash verified for logins of unknown users, so that a test
// can check it costs what a real user's verification costs.
func DummyHash(s *Service) string { return s.dummyHash }

// HashParams exposes the parameters recorded in an encoded hash.
func HashParams(encoded string) (Params, error) {
	p, _, _, err := decodeHash(encoded)
	return p, err
}
