package rpc

import "embed"

// Schemas holds one OpenRPC method object per method, as schemas/<method>.json: its
// summary, its params in positional order (each with a JSON Schema) and its result.
// The server validates params against them and serves them through rpc.discover.
//
//go:embed schemas/*.json
var Schemas embed.FS
