package store

import (
	"context"
	"io/fs"
)

// MigrateFS lets the tests apply migration sets of their own.
func (s *Store) MigrateFS(ctx context.Context, fsys fs.FS) (int, error) { return s.migrate(ctx, fsys) }

// MigrationVersions returns the versions of the migrations in fsys, in the order they
// would be applied.
func MigrationVersions(fsys fs.FS) ([]int, error) {
	ms, err := loadMigrations(fsys)
	if err != nil {
		return nil, err
	}
	out := make([]int, len(ms))
	for i, m := range ms {
		out[i] = m.version
	}
	return out, nil
}
