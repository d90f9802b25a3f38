// Package rpc holds the wire contract between cdsd and its clients: JSON-RPC 2.0
// message types, error codes, method names, and the params and result types of every
// method. It has no dependency on the server or the engine, so clients (cds, tests,
// other tools) can import it alone.
package rpc
