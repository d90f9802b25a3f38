package auth_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/cyberdevstudio/cds/engine/auth"
	"github.com/cyberdevstudio/cds/engine/store/storetest"
)

// BenchmarkLogin measures full logins (argon2id verification with the production
// parameters, lockout bookkeeping, session and token issue) from parallel clients.
// argon2id is meant to be slow: the figure is the price of each login, reported as
// logins/s alongside the parameters.
func BenchmarkLogin(b *testing.B) {
	st := storetest.New(b)
	p := auth.DefaultParams()
	svc, err := auth.New(auth.Config{DB: st.Pool(), SigningKey: testKey, Argon2: p})
	if err != nil {
		b.Fatal(err)
	}
	// One account per client IP keeps the lockout and rate limits out of the way.
	const accounts = 8
	for i := range accounts {
		if _, err := svc.CreateUser(b.Context(), fmt.Sprintf("user%d", i), strongPassword, auth.RoleDeveloper, false); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(1) % accounts
		for pb.Next() {
			if _, err := svc.Login(b.Context(), fmt.Sprintf("user%d", i), strongPassword, fmt.Sprintf("10.0.0.%d", i), "bench"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
	b.ReportMetric(float64(p.Memory)/1024, "argon2-MiB")
	b.ReportMetric(float64(p.Iterations), "argon2-t")
}
