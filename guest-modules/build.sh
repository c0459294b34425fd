#!/usr/bin/env bash
# Builds every guest in this workspace to a wasm32-wasip2 component with
# cargo-component, into guest-modules/target/wasm32-wasip2/release/.
# Uses rustup's wasm32-wasip2 target when installed, else the `rustweb`
# toolchain made by toolchain/setup.sh (std built from source).
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$HOME/.cargo/bin:$PATH"
unset CARGO_TARGET_DIR  # guests always share guest-modules/target

if rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  exec cargo component build --release --target wasm32-wasip2 --workspace "$@"
fi
if ! rustup toolchain list | grep -q '^rustweb'; then
  echo "no wasm32-wasip2 toolchain: run guest-modules/toolchain/setup.sh first" >&2
  exit 1
fi
RUSTC_BOOTSTRAP=1 exec cargo +rustweb component build --release --target wasm32-wasip2 \
  -Z build-std=std,panic_abort --workspace "$@"
