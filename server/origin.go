package server

import (
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/cyberdevstudio/cds/server/rpc"
)

// withOriginCheck refuses requests that a web page on another site makes through a
// visitor's browser (cross-site request forgery: a "simple" POST to /rpc needs no
// CORS preflight), and, while cdsd listens on loopback only, requests whose Host is
// not a loopback name (DNS rebinding: a hostile name resolving to 127.0.0.1 makes
// the page same-origin with it). Clients that are not browsers send neither Origin
// nor Sec-Fetch-Site and pass.
func (s *Server) withOriginCheck(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.LoopbackOnly && !loopbackHost(r.Host) {
			s.refuse(w, r, "Host %q is not a loopback name and cdsd listens on loopback only; use http://127.0.0.1 or http://localhost", truncate(r.Host, 100))
			return
		}
		origin := r.Header.Get("Origin")
		if origin == "" {
			if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
				s.refuse(w, r, "cross-site request refused")
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		if !s.originAllowed(origin, r.Host) {
			s.refuse(w, r, "cross-origin request from %q refused; start cdsd with --allow-origin %s to allow it", truncate(origin, 100), truncate(origin, 100))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) originAllowed(origin, host string) bool {
	if slices.Contains(s.cfg.AllowedOrigins, origin) {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Host, host)
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, format string, args ...any) {
	e := rpc.NewError(rpc.CodeForbidden, format, args...)
	s.log.Warn("request refused", "request_id", RequestID(r.Context()), "detail", e.Data.Detail, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusForbidden, rpc.Response{JSONRPC: rpc.Version, ID: nullID, Error: e})
}

// loopbackHost reports whether a Host header names this machine's loopback.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
