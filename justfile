# CyberDevStudio tasks. `just` is optional: every recipe runs a script or a go
# command that works without it (`just test` is ./scripts/test).

set shell := ["bash", "-euo", "pipefail", "-c"]
# Recipe arguments arrive as "$@", so arguments with spaces survive.
set positional-arguments := true

# llama.cpp through cgo is about 4x faster with these than with Go's default
# flags (x86-64 with AVX2; scripts/common.sh picks plain -O3 elsewhere).
cgo_flags := if arch() == "x86_64" { "-O3 -mavx2 -mfma -mf16c" } else { "-O3" }
export CGO_CFLAGS := env_var_or_default("CDS_CGO_FLAGS", cgo_flags)
export CGO_CXXFLAGS := env_var_or_default("CDS_CGO_FLAGS", cgo_flags)

version := `git describe --always --dirty 2>/dev/null || echo dev`

# List the recipes.
default:
    @{{just_executable()}} --list

# Build bin/cdsd and bin/cds and run cdsd (arguments go to cdsd).
run *args:
    ./scripts/studio "$@"

# Run go vet, every test and a short fuzz run, as CI does.
test:
    ./scripts/test

# Build bin/cdsd (with cgo) and bin/cds (without) stamped with the git version.
build:
    go build -ldflags "-X main.version={{version}}" -o bin/cdsd ./cmd/cdsd
    CGO_ENABLED=0 go build -ldflags "-X main.version={{version}}" -o bin/cds ./cmd/cds

# Check gofmt and go vet.
lint:
    ./scripts/lint

# Run every Go benchmark once, then the scripts in scripts/bench.
bench:
    go test -run '^$' -bench . -benchmem ./...
    for b in scripts/bench/*; do "$b"; done

# Print statement coverage per package and in total (arguments select packages).
cover *pkgs:
    ./scripts/cover "$@"

# Fuzz the JSON-RPC decoder (default: one minute).
fuzz time="1m":
    go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime "$1" ./server/rpc/
