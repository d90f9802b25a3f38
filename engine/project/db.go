package project

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// querier is what the pool and a transaction have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// fileCols are the columns scanFile reads, from project_files f.
const fileCols = `f.id, f.path, f.head_revision, f.size, f.blob_sha256, f.deleted_at IS NOT NULL, f.updated_at`

// fileRow is a project_files row.
type fileRow struct {
	id int64
	File
}

// scanFile scans fileCols.
func scanFile(row pgx.Row) (fileRow, error) {
	var f fileRow
	var sum []byte
	err := row.Scan(&f.id, &f.Path, &f.Revision, &f.Size, &sum, &f.Deleted, &f.UpdatedAt)
	copy(f.SHA256[:], sum)
	return f, err
}

// isUniqueViolation reports whether err is a unique violation of the named
// constraint or index.
func isUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == constraint
}
