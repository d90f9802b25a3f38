package server

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyberdevstudio/cds/server/rpc"
)

const benchClients = 64

// BenchmarkFileRead measures project.file.read of a 1 KiB file over HTTP with 64
// concurrent clients, next to a bare net/http handler that returns the same bytes,
// in the same run. It reports throughput and p99 latency of both; compare them, do
// not assert on them.
func BenchmarkFileRead(b *testing.B) {
	env := newEnv(b)
	ctx := b.Context()
	p, err := env.client.ProjectCreate(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := env.client.FileSave(ctx, rpc.FileSaveParams{ProjectID: p.ID, Path: "src/data.txt", Content: strings.Repeat("0123456789abcdef", 64)}); err != nil {
		b.Fatal(err)
	}
	body := []byte(fmt.Sprintf(`{"jsonrpc":"2.0","method":"project.file.read","params":{"project_id":%q,"path":"src/data.txt"},"id":1}`, p.ID))
	answer := post(b, env.url, string(body), env.tokens[rpc.RoleAdmin])
	if answer.status != http.StatusOK || !bytes.Contains(answer.body, []byte(`"revision":1`)) {
		b.Fatalf("read answered %d %s", answer.status, answer.body)
	}

	bare := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer.body)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = bare.Serve(ln) }()
	defer bare.Close()

	token := env.tokens[rpc.RoleAdmin]
	b.Run("cdsd", func(b *testing.B) { loadTest(b, env.url+"/rpc", token, body) })
	b.Run("bare", func(b *testing.B) { loadTest(b, "http://"+ln.Addr().String()+"/rpc", token, body) })
}

// loadTest sends b.N requests from benchClients goroutines and reports req/s and
// the p50 and p99 latencies.
func loadTest(b *testing.B, url, token string, body []byte) {
	tr := &http.Transport{MaxIdleConns: benchClients, MaxIdleConnsPerHost: benchClients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var (
		next      atomic.Int64
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, b.N)
		failures  atomic.Int64
		wg        sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	for range benchClients {
		wg.Go(func() {
			local := make([]time.Duration, 0, b.N/benchClients+1)
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
				if err != nil {
					failures.Add(1)
					continue
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := hc.Do(req)
				if err != nil {
					failures.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failures.Add(1)
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			latencies = append(latencies, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if f := failures.Load(); f > 0 {
		b.Fatalf("%d of %d requests failed", f, b.N)
	}
	slices.Sort(latencies)
	pct := func(q float64) float64 {
		return float64(latencies[int(q*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
