package store_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"

	"github.com/cyberdevstudio/cds/engine/store"
	"github.com/cyberdevstudio/cds/engine/store/storetest"
	"github.com/cyberdevstudio/cds/migrations"
)

// emptySchema removes everything the template's migrations made, so that a test can
// migrate from scratch.
func emptySchema(t *testing.T, s *store.Store) {
	t.Helper()
	if _, err := s.Pool().Exec(t.Context(), "DROP SCHEMA public CASCADE; CREATE SCHEMA public"); err != nil {
		t.Fatalf("empty the schema: %v", err)
	}
}

// latestVersion is the highest version among the embedded migrations.
func latestVersion(t *testing.T) int {
	t.Helper()
	versions, err := store.MigrationVersions(migrations.FS)
	if err != nil {
		t.Fatalf("load embedded migrations: %v", err)
	}
	if len(versions) == 0 {
		t.Fatal("no embedded migrations")
	}
	return versions[len(versions)-1]
}

// tableExists reports whether the public schema has the table.
func tableExists(t *testing.T, s *store.Store, table string) bool {
	t.Helper()
	var ok bool
	if err := s.Pool().QueryRow(t.Context(), "SELECT to_regclass($1) IS NOT NULL", "public."+table).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func migrationVersion(t *testing.T, s *store.Store) int {
	t.Helper()
	v, err := s.MigrationVersion(t.Context())
	if err != nil {
		t.Fatalf("MigrationVersion: %v", err)
	}
	return v
}

func TestMigrateFromScratch(t *testing.T) {
	s := storetest.New(t)
	emptySchema(t, s)
	if v := migrationVersion(t, s); v != 0 {
		t.Fatalf("MigrationVersion of an empty database = %d, want 0", v)
	}
	versions, err := store.MigrationVersions(migrations.FS)
	if err != nil {
		t.Fatal(err)
	}

	applied, err := s.Migrate(t.Context())
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if applied != len(versions) {
		t.Errorf("Migrate applied %d migrations, want all %d", applied, len(versions))
	}
	if v := migrationVersion(t, s); v != latestVersion(t) {
		t.Errorf("MigrationVersion = %d, want %d", v, latestVersion(t))
	}
	for _, table := range []string{"users", "projects", "file_revisions"} {
		if !tableExists(t, s, table) {
			t.Errorf("table %s missing after Migrate", table)
		}
	}

	// Each migration is recorded with the description from its file name.
	rows, err := s.Pool().Query(t.Context(), "SELECT version, name, applied_at IS NOT NULL FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Version int
		Name    string
		Stamped bool
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(versions) || got[0].Version != 1 || got[0].Name != "init" || !got[0].Stamped {
		t.Errorf("schema_migrations = %+v, want one row per migration starting with {1 init true}", got)
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	s := storetest.New(t)
	// The template is migrated already, so a clone has nothing left to apply.
	for i := range 2 {
		applied, err := s.Migrate(t.Context())
		if err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
		if applied != 0 {
			t.Errorf("Migrate #%d applied %d migrations, want 0", i+1, applied)
		}
	}
	if v := migrationVersion(t, s); v != latestVersion(t) {
		t.Errorf("MigrationVersion = %d, want %d", v, latestVersion(t))
	}
}

func TestMigrateAppliesOnlyPending(t *testing.T) {
	s := storetest.New(t)
	fsys := fstest.MapFS{
		"1000_first.sql": {Data: []byte("CREATE TABLE first (id INT)")},
	}
	if applied, err := s.MigrateFS(t.Context(), fsys); err != nil || applied != 1 {
		t.Fatalf("MigrateFS = %d, %v; want 1, nil", applied, err)
	}
	// A release adds a migration: only the new one runs (the first would fail if rerun).
	fsys["1001_second.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE second (id INT); INSERT INTO second VALUES (1), (2)")}
	if applied, err := s.MigrateFS(t.Context(), fsys); err != nil || applied != 1 {
		t.Fatalf("MigrateFS = %d, %v; want 1, nil", applied, err)
	}
	if v := migrationVersion(t, s); v != 1001 {
		t.Errorf("MigrationVersion = %d, want 1001", v)
	}
	var n int
	if err := s.Pool().QueryRow(t.Context(), "SELECT count(*) FROM second").Scan(&n); err != nil || n != 2 {
		t.Errorf("rows of a multi-statement migration = %d, %v; want 2", n, err)
	}
}

func TestMigrateFailureRollsBack(t *testing.T) {
	s := storetest.New(t)
	before := migrationVersion(t, s)
	fsys := fstest.MapFS{
		"1000_good.sql":   {Data: []byte("CREATE TABLE good (id INT)")},
		"1001_broken.sql": {Data: []byte("CREATE TABLE broken (id INT); SELEC oops")},
	}
	applied, err := s.MigrateFS(t.Context(), fsys)
	if err == nil {
		t.Fatal("MigrateFS with a broken migration succeeded")
	}
	if !strings.Contains(err.Error(), "1001_broken") {
		t.Errorf("error %q does not name the broken migration", err)
	}
	if applied != 0 {
		t.Errorf("applied = %d after a failure, want 0", applied)
	}
	for _, table := range []string{"good", "broken"} {
		if tableExists(t, s, table) {
			t.Errorf("table %s exists after a failed migration run", table)
		}
	}
	if v := migrationVersion(t, s); v != before {
		t.Errorf("MigrationVersion = %d after a failure, want %d", v, before)
	}
}

func TestMigrateConcurrently(t *testing.T) {
	url := storetest.NewURL(t)
	// Two pools stand for two replicas of cdsd starting at the same time.
	stores := make([]*store.Store, 2)
	for i := range stores {
		s, err := store.Open(t.Context(), url, nil)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(s.Close)
		stores[i] = s
	}
	emptySchema(t, stores[0])
	versions, err := store.MigrationVersions(migrations.FS)
	if err != nil {
		t.Fatal(err)
	}

	applied := make([]int, len(stores))
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() { applied[i], errs[i] = s.Migrate(t.Context()) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Migrate: %v", err)
	}
	// Exactly one of them did the work.
	if slices.Max(applied) != len(versions) || slices.Min(applied) != 0 {
		t.Errorf("applied = %v, want one %d and one 0", applied, len(versions))
	}
	if v := migrationVersion(t, stores[1]); v != latestVersion(t) {
		t.Errorf("MigrationVersion = %d, want %d", v, latestVersion(t))
	}
}

func TestNewerDatabaseSchema(t *testing.T) {
	s := storetest.New(t)
	// A newer release applied a migration this one does not know.
	if _, err := s.Pool().Exec(t.Context(), "INSERT INTO schema_migrations (version, name) VALUES (9999, 'future')"); err != nil {
		t.Fatal(err)
	}
	applied, err := s.Migrate(t.Context())
	if err != nil || applied != 0 {
		t.Errorf("Migrate = %d, %v; want 0, nil", applied, err)
	}
	if v := migrationVersion(t, s); v != 9999 {
		t.Errorf("MigrationVersion = %d, want 9999", v)
	}
}

func TestLoadMigrations(t *testing.T) {
	file := func(sql string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(sql)} }
	tests := []struct {
		name    string
		fsys    fstest.MapFS
		want    []int
		wantErr string
	}{
		{name: "numeric order", fsys: fstest.MapFS{"10_b.sql": file(""), "2_a.sql": file(""), "001_c.sql": file("")}, want: []int{1, 2, 10}},
		{name: "other files ignored", fsys: fstest.MapFS{"001_a.sql": file(""), "README.md": file(""), "sub/002_b.sql": file("")}, want: []int{1}},
		{name: "empty", fsys: fstest.MapFS{}, want: []int{}},
		{name: "no number", fsys: fstest.MapFS{"init.sql": file("")}, wantErr: "NNN_description.sql"},
		{name: "dash", fsys: fstest.MapFS{"001-init.sql": file("")}, wantErr: "NNN_description.sql"},
		{name: "upper case", fsys: fstest.MapFS{"001_Init.sql": file("")}, wantErr: "NNN_description.sql"},
		{name: "zero", fsys: fstest.MapFS{"000_zero.sql": file("")}, wantErr: "positive"},
		{name: "duplicate", fsys: fstest.MapFS{"001_a.sql": file(""), "1_b.sql": file("")}, wantErr: "same version 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := store.MigrationVersions(tt.fsys)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("versions = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMigrateRejectsBadSet(t *testing.T) {
	s := storetest.New(t)
	before := migrationVersion(t, s)
	_, err := s.MigrateFS(t.Context(), fstest.MapFS{"1000_ok.sql": {Data: []byte("CREATE TABLE ok (id INT)")}, "bad.sql": {}})
	if err == nil {
		t.Fatal("MigrateFS with a malformed file name succeeded")
	}
	if tableExists(t, s, "ok") || migrationVersion(t, s) != before {
		t.Error("a malformed migration set changed the database")
	}
}

func TestMigrateCancelled(t *testing.T) {
	s := storetest.New(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.MigrateFS(ctx, fstest.MapFS{"1000_ok.sql": {Data: []byte("CREATE TABLE ok (id INT)")}}); !errors.Is(err, context.Canceled) {
		t.Errorf("MigrateFS with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestPendingMigrations(t *testing.T) {
	st := storetest.New(t)
	ctx := t.Context()
	pending, err := st.PendingMigrations(ctx)
	if err != nil || len(pending) != 0 {
		t.Fatalf("fresh migrated database: pending %v, err %v", pending, err)
	}
	// Forget one applied version, as if an older migration had been merged later.
	if _, err := st.Pool().Exec(ctx, `DELETE FROM schema_migrations WHERE version = 1`); err != nil {
		t.Fatal(err)
	}
	pending, err = st.PendingMigrations(ctx)
	if err != nil || len(pending) != 1 || pending[0] != 1 {
		t.Fatalf("pending %v, err %v; want [1]", pending, err)
	}
	if _, err := st.Pool().Exec(ctx, `DROP TABLE schema_migrations`); err != nil {
		t.Fatal(err)
	}
	pending, err = st.PendingMigrations(ctx)
	if err != nil || len(pending) == 0 {
		t.Fatalf("without schema_migrations: pending %v, err %v", pending, err)
	}
}
