package server

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestSchemasMatchParamTypes checks that every param a method's schema names is a
// field of its Go params type and the other way round, so by-name params, the
// OpenRPC document and the typed client cannot drift apart.
func TestSchemasMatchParamTypes(t *testing.T) {
	env := newEnv(t)
	if got, want := env.srv.reg.names(), slices.Sorted(maps.Keys(env.srv.reg.docs)); !slices.Equal(got, want) {
		t.Fatalf("registered methods %v, schema files %v", got, want)
	}
	for _, name := range env.srv.reg.names() {
		t.Run(name, func(t *testing.T) {
			m := env.srv.reg.methods[name]
			var fields []string
			for f := range m.paramType.Fields() {
				tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				if f.Anonymous || tag == "" || tag == "-" {
					t.Fatalf("field %s of %s has no json name", f.Name, m.paramType)
				}
				fields = append(fields, tag)
			}
			slices.Sort(fields)
			params := slices.Sorted(slices.Values(m.paramNames()))
			if !slices.Equal(fields, params) {
				t.Fatalf("%s: Go fields %v, schema params %v", m.paramType, fields, params)
			}
			if m.paramType.Kind() != reflect.Struct {
				t.Fatalf("params type %s is not a struct", m.paramType)
			}
		})
	}
}
