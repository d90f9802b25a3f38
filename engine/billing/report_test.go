package billing_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cyberdevstudio/cds/engine/billing"
)

func TestReport(t *testing.T) {
	e := newEnv(t, 0)
	alice := e.user(t, "alice", 10_000)
	bob := e.user(t, "bob", 10_000)
	llama := e.model(t, "llama", "1")
	qwen := e.model(t, "qwen", "2")
	day1 := time.Date(2025, 3, 1, 23, 30, 0, 0, time.UTC)
	day2 := day1.Add(time.Hour) // 2025-03-02 00:30 UTC

	// Each call: who, which model (nil: none), when, prompt, completion, cost.
	calls := []struct {
		user  int64
		model *int64
		at    time.Time
		p, c  int
		cost  int64
	}{
		{alice, &llama, day1, 10, 5, 15},
		{alice, &qwen, day1, 20, 10, 60},
		{alice, &llama, day2, 1, 1, 2},
		{bob, &qwen, day2, 100, 0, 200},
		{bob, nil, day2, 3, 4, 0},
	}
	for _, c := range calls {
		e.clock.Set(c.at)
		r := e.reserve(t, c.user, c.model, c.cost)
		if _, err := e.ledger.Settle(t.Context(), r.ID, billing.Usage{PromptTokens: c.p, CompletionTokens: c.c, Cost: c.cost}); err != nil {
			t.Fatalf("Settle: %v", err)
		}
	}
	// An open reservation is not usage yet.
	e.reserve(t, alice, &llama, 500)

	row := func(key string, p, c, cost, calls int64) billing.ReportRow {
		return billing.ReportRow{Key: key, Tokens: p + c, PromptTokens: p, CompletionTokens: c, Cost: cost, Calls: calls}
	}
	tests := []struct {
		name   string
		filter billing.ReportFilter
		want   []billing.ReportRow
	}{
		{
			name:   "all users by model",
			filter: billing.ReportFilter{GroupBy: billing.GroupByModel},
			want:   []billing.ReportRow{row("", 3, 4, 0, 1), row("llama", 11, 6, 17, 2), row("qwen", 120, 10, 260, 2)},
		},
		{
			name:   "one user by model",
			filter: billing.ReportFilter{UserID: alice, GroupBy: billing.GroupByModel},
			want:   []billing.ReportRow{row("llama", 11, 6, 17, 2), row("qwen", 20, 10, 60, 1)},
		},
		{
			name:   "all users by UTC day",
			filter: billing.ReportFilter{GroupBy: billing.GroupByDay},
			want:   []billing.ReportRow{row("2025-03-01", 30, 15, 75, 2), row("2025-03-02", 104, 5, 202, 3)},
		},
		{
			name:   "by user",
			filter: billing.ReportFilter{GroupBy: billing.GroupByUser},
			want:   []billing.ReportRow{row("alice", 31, 16, 77, 3), row("bob", 103, 4, 200, 2)},
		},
		{
			name:   "since is inclusive",
			filter: billing.ReportFilter{Since: day2, GroupBy: billing.GroupByUser},
			want:   []billing.ReportRow{row("alice", 1, 1, 2, 1), row("bob", 103, 4, 200, 2)},
		},
		{
			name:   "until is exclusive",
			filter: billing.ReportFilter{Until: day2, GroupBy: billing.GroupByUser},
			want:   []billing.ReportRow{row("alice", 30, 15, 75, 2)},
		},
		{
			name:   "user and range",
			filter: billing.ReportFilter{UserID: bob, Since: day1, Until: day2.Add(time.Second), GroupBy: billing.GroupByDay},
			want:   []billing.ReportRow{row("2025-03-02", 103, 4, 200, 2)},
		},
		{
			name:   "nothing in range",
			filter: billing.ReportFilter{Since: day2.Add(time.Hour), GroupBy: billing.GroupByModel},
			want:   nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.ledger.Report(t.Context(), tc.filter)
			if err != nil {
				t.Fatalf("Report: %v", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Report =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestReportRejectsUnknownGrouping(t *testing.T) {
	e := newEnv(t, 0)
	for _, g := range []string{"", "month", "model; DROP TABLE users"} {
		t.Run(g, func(t *testing.T) {
			if _, err := e.ledger.Report(t.Context(), billing.ReportFilter{GroupBy: g}); !errors.Is(err, billing.ErrInvalid) {
				t.Errorf("Report(GroupBy %q) = %v, want ErrInvalid", g, err)
			}
		})
	}
}
