// Package migrations embeds the numbered SQL migrations that cdsd applies at startup.
//
// Files are named NNN_description.sql; they are applied in numeric order, all pending
// ones in one transaction, and never edited once released: a change is a new file.
package migrations

import (
	"embed"
	"io/fs"
)

// FS holds every migration file at its root.
//
//go:embed *.sql
var FS embed.FS

// Count is the number of migrations embedded in this binary: the schema version a
// fully migrated database has.
func Count() int {
	files, err := fs.Glob(FS, "*.sql")
	if err != nil {
		panic(err) // the pattern is constant and valid
	}
	return len(files)
}
