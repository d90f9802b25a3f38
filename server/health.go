package server

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// handleHealth is liveness: the process answers.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReady is readiness: the database answers and every migration this binary
// carries is applied.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.cfg.Store.Ping(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "detail": "database unreachable: " + err.Error()})
		return
	}
	pending, err := s.cfg.Store.PendingMigrations(ctx)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "detail": "read migrations: " + err.Error()})
		return
	}
	v, err := s.cfg.Store.MigrationVersion(ctx)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "detail": "read migration version: " + err.Error()})
		return
	}
	if len(pending) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "detail": fmt.Sprintf("migrations pending: %v", pending), "migration": v})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "migration": v})
}
