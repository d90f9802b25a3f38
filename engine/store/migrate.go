package store

import (
	"context"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/cyberdevstudio/cds/migrations"
)

// migrationLockID is the key of the advisory lock that serializes migrations across
// every cdsd replica sharing a database ("cdsmigr" in ASCII).
const migrationLockID int64 = 0x636473_6d696772

// migrationFile matches a migration's file name: NNN_description.sql.
var migrationFile = regexp.MustCompile(`^([0-9]+)_([a-z0-9_]+)\.sql$`)

// migration is one numbered SQL file.
type migration struct {
	version int
	name    string // the description part of the file name
	sql     string
}

// Migrate applies the embedded migrations that the database has not seen yet and returns
// how many it applied. All of them run in one transaction that first takes an advisory
// lock, so concurrent callers (several replicas starting at once) wait for each other,
// and a failing migration leaves the schema as it was.
func (s *Store) Migrate(ctx context.Context) (applied int, err error) {
	return s.migrate(ctx, migrations.FS)
}

// migrate applies the migrations of fsys; Migrate passes the embedded set, tests their
// own.
func (s *Store) migrate(ctx context.Context, fsys fs.FS) (int, error) {
	all, err := loadMigrations(fsys)
	if err != nil {
		return 0, err
	}
	applied := 0
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The lock comes first so that no two callers even create the table at once.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLockID); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INT PRIMARY KEY,
			name       TEXT NOT NULL,
			applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
		)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		rows, err := tx.Query(ctx, "SELECT version FROM schema_migrations")
		if err != nil {
			return fmt.Errorf("read applied migrations: %w", err)
		}
		done, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			return fmt.Errorf("read applied migrations: %w", err)
		}
		for _, m := range all {
			if slices.Contains(done, m.version) {
				continue
			}
			// Without arguments pgx uses the simple protocol, which runs several statements.
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("apply migration %03d_%s: %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
				m.version, m.name); err != nil {
				return fmt.Errorf("record migration %03d_%s: %w", m.version, m.name, err)
			}
			applied++
		}
		if len(done) > 0 && len(all) > 0 && slices.Max(done) > all[len(all)-1].version {
			// A newer cdsd migrated this database; this one may still work with it.
			s.logger.Warn("database schema is newer than this program",
				"database_version", slices.Max(done), "program_version", all[len(all)-1].version)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if applied > 0 {
		s.logger.Info("applied database migrations", "count", applied, "version", all[len(all)-1].version)
	}
	return applied, nil
}

// MigrationVersion returns the highest applied migration, 0 when none has been.
func (s *Store) MigrationVersion(ctx context.Context) (int, error) {
	var exists bool
	if err := s.pool.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return 0, fmt.Errorf("look for schema_migrations: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var v int
	if err := s.pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("read migration version: %w", err)
	}
	return v, nil
}

// loadMigrations reads the .sql files at the root of fsys, sorted by version. Other files
// are ignored; a .sql file with a malformed name or a version used twice is an error, so
// that a mistake fails the build's tests instead of skipping a migration.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var out []migration
	byVersion := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		m := migrationFile.FindStringSubmatch(name)
		if m == nil {
			return nil, fmt.Errorf("migration file %q: name must be NNN_description.sql "+
				"(digits, underscore, lower-case letters, digits and underscores)", name)
		}
		version, err := strconv.Atoi(m[1])
		if err != nil || version <= 0 {
			return nil, fmt.Errorf("migration file %q: version must be a positive number", name)
		}
		if other, dup := byVersion[version]; dup {
			return nil, fmt.Errorf("migration files %q and %q have the same version %d", other, name, version)
		}
		byVersion[version] = name
		sql, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration: %w", err)
		}
		out = append(out, migration{version: version, name: m[2], sql: string(sql)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	return out, nil
}

// PendingMigrations lists the versions of the embedded migrations that the database
// has not applied; empty means the schema is current. Unlike comparing the highest
// version, it also sees a gap (an older migration merged after a newer one ran).
func (s *Store) PendingMigrations(ctx context.Context) ([]int, error) {
	all, err := loadMigrations(migrations.FS)
	if err != nil {
		return nil, err
	}
	versions := make([]int, len(all))
	for i, m := range all {
		versions[i] = m.version
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return nil, fmt.Errorf("look for schema_migrations: %w", err)
	}
	if !exists {
		return versions, nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT v FROM unnest($1::int[]) AS v
		WHERE v NOT IN (SELECT version FROM schema_migrations) ORDER BY v`, versions)
	if err != nil {
		return nil, fmt.Errorf("compare migrations: %w", err)
	}
	pending, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("compare migrations: %w", err)
	}
	return pending, nil
}
