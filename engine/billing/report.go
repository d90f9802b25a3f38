package billing

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Report groupings, the values of ReportFilter.GroupBy.
const (
	// GroupByModel keys rows by model name; usage without a model (none given, or the
	// model was deleted) is keyed "".
	GroupByModel = "model"
	// GroupByDay keys rows by UTC calendar day, "2006-01-02".
	GroupByDay = "day"
	// GroupByUser keys rows by username.
	GroupByUser = "user"
)

// ReportFilter selects the usage a report sums.
type ReportFilter struct {
	// UserID limits the report to one user; 0 means all users (for admins).
	UserID int64
	// Since and Until bound the usage's time, Since inclusive and Until exclusive; a zero
	// time leaves that side open.
	Since, Until time.Time
	// GroupBy is GroupByModel, GroupByDay or GroupByUser.
	GroupBy string
}

// ReportRow is the usage of one group.
type ReportRow struct {
	// Key names the group: a model name, a day or a username (see the GroupBy constants).
	Key string
	// Tokens is the sum of prompt and completion tokens.
	Tokens, PromptTokens, CompletionTokens int64
	// Cost is the credits charged.
	Cost int64
	// Calls is the number of settled calls.
	Calls int64
}

// groupKeys maps each grouping to its SQL key expression over tokens_used t, models m
// and users u. Only these constant strings ever reach the query text.
var groupKeys = map[string]string{
	GroupByModel: "coalesce(m.name, '')",
	GroupByDay:   "to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
	GroupByUser:  "u.username",
}

// Report sums settled usage per group, ordered by key. An unknown GroupBy gives
// ErrInvalid.
func (l *Ledger) Report(ctx context.Context, f ReportFilter) ([]ReportRow, error) {
	key, ok := groupKeys[f.GroupBy]
	if !ok {
		return nil, fmt.Errorf("report grouped by %q (want model, day or user): %w", f.GroupBy, ErrInvalid)
	}
	rows, err := l.db.Query(ctx, `
		SELECT `+key+` AS key,
			coalesce(sum(t.tokens), 0)::bigint,
			coalesce(sum(t.prompt_tokens), 0)::bigint,
			coalesce(sum(t.completion_tokens), 0)::bigint,
			coalesce(sum(t.cost), 0)::bigint,
			count(*)
		FROM tokens_used t
		JOIN users u ON u.id = t.user_id
		LEFT JOIN models m ON m.id = t.model_id
		WHERE ($1 = 0 OR t.user_id = $1)
			AND ($2::timestamptz IS NULL OR t.created_at >= $2)
			AND ($3::timestamptz IS NULL OR t.created_at < $3)
		GROUP BY 1
		ORDER BY 1`, f.UserID, nullableTime(f.Since), nullableTime(f.Until))
	if err != nil {
		return nil, fmt.Errorf("query usage report: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ReportRow, error) {
		var r ReportRow
		err := row.Scan(&r.Key, &r.Tokens, &r.PromptTokens, &r.CompletionTokens, &r.Cost, &r.Calls)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("read usage report: %w", err)
	}
	return out, nil
}

// nullableTime maps the zero time to SQL NULL.
func nullableTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
