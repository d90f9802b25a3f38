# shellcheck shell=bash
# Sourced by the scripts in this directory: moves to the repository root and sets
# what every build and test needs. Not meant to be run on its own.

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# llama.cpp (built through cgo for cdsd's inference) is about 4x faster with these
# flags than with Go's default -O2. They need an x86-64 CPU with AVX2, FMA and F16C
# (Intel Haswell / AMD Excavator and newer); other machines get plain -O3.
# CDS_CGO_FLAGS overrides them, e.g. CDS_CGO_FLAGS="-O3 -march=native".
if [[ -n "${CDS_CGO_FLAGS:-}" ]]; then
	cgo_flags="$CDS_CGO_FLAGS"
elif [[ "$(uname -m)" == x86_64 ]]; then
	cgo_flags="-O3 -mavx2 -mfma -mf16c"
else
	cgo_flags="-O3"
fi
export CGO_CFLAGS="$cgo_flags"
export CGO_CXXFLAGS="$cgo_flags"

# die prints an error in the name of the running script and exits.
die() {
	echo "$(basename "$0"): $*" >&2
	exit 1
}

# need_go fails clearly when Go is missing.
need_go() {
	command -v go >/dev/null 2>&1 ||
		die "go is not on PATH; install Go $(sed -n 's/^go //p' go.mod) or newer from https://go.dev/dl/"
}

# build_version is the version stamped into the binaries.
build_version() {
	git describe --always --dirty 2>/dev/null || echo dev
}

# step announces a stage of a script.
step() {
	printf '==> %s\n' "$*" >&2
}
