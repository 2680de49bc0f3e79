#!/usr/bin/env bash
# Builds app.zip with a handler binary that runs on every Functions v4 Linux image: linked
# against glibc 2.31 (Debian 11 "bullseye", the oldest image glibc) with cargo-zigbuild, which
# uses Zig's C toolchain and glibc stubs for the bundled SQLite, ring, aws-lc and mimalloc.
# Both tools come from PyPI (`ziglang` ships the Zig compiler), into a virtual environment, so
# nothing is downloaded at build time beyond the Python packages.
#
#   infra/build-package.sh [OUTPUT]      # default app.zip
#
# Then `socwire package` checks the binary's newest GLIBC_ symbol (it refuses above 2.31).
set -euo pipefail
cd "$(dirname "$0")/.."
output="${1:-app.zip}"
venv="${SOCWIRE_ZIG_VENV:-target/zigbuild-venv}"
target="x86_64-unknown-linux-gnu.2.31"
if [ ! -x "$venv/bin/cargo-zigbuild" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "ziglang==0.17.*" "cargo-zigbuild==0.24.*"
fi
# cargo-zigbuild finds Zig through `python3 -m ziglang` when `zig` is not on PATH.
export PATH="$PWD/$venv/bin:$PATH"
cargo zigbuild --release --no-default-features -p socwire --target "$target"
binary="target/x86_64-unknown-linux-gnu/release/socwire"
"$binary" package --binary "$binary" --output "$output"
