#!/usr/bin/env bash
# Makes wasm32-wasip2 guest builds possible and installs the dev tools Warden needs
# (just, wasm-tools, cargo-component). Idempotent: every step is skipped when done.
#
# Guest std: rustup's wasm32-wasip2 target when installed (a normal laptop); otherwise
# Debian's rustc-web (which ships its exact std source) is unpacked into a prefix,
# linked as the rustup toolchain `rustweb`, and std is built with -Zbuild-std.
# See guest-modules/toolchain/README.md for the why.
set -euo pipefail

PREFIX="${WARDEN_RUSTWEB_PREFIX:-/opt/warden-rustweb}"
TOOLCHAIN_NAME=rustweb
WASM_TOOLS_VERSION=1.263.0
CARGO_COMPONENT_VERSION=0.21.1

log() { printf '[setup] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
export PATH="$HOME/.cargo/bin:$HOME/.local/bin:$PATH"

has_rustup_wasip2() {
  rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2
}

install_rustweb() {
  if rustup toolchain list | grep -q "^${TOOLCHAIN_NAME}" \
     && [ -e "$PREFIX/usr/lib/rustlib/wasm32-wasip2/lib/self-contained/crt1-command.o" ]; then
    log "toolchain $TOOLCHAIN_NAME ready at $PREFIX"
    return
  fi
  log "building the $TOOLCHAIN_NAME toolchain from Debian's rustc-web into $PREFIX"
  local work; work=$(mktemp -d)
  chmod 755 "$work"  # apt's download user must be able to write here
  [ -n "$(apt-cache policy rustc-web 2>/dev/null | awk '/Candidate/ {print $2}')" ] || as_root apt-get update -q
  local ver; ver=$(apt-cache policy rustc-web | awk '/Candidate:/ {print $2}')
  [ -n "$ver" ] && [ "$ver" != "(none)" ] || { log "rustc-web not found in apt"; exit 1; }
  local std_pkg; std_pkg=$(apt-cache show "libstd-rust-web-dev=$ver" | awk -F'[ ,]+' '/^Depends:/ { for (i=2;i<=NF;i++) if ($i ~ /^libstd-rust-web-[0-9]/) print $i }' | head -n1)
  local llvm; llvm=$(apt-cache show "$std_pkg=$ver" | grep -oE 'libllvm[0-9]+' | head -n1 | tr -dc 0-9)
  log "rustc-web $ver, $std_pkg, LLVM $llvm"
  as_root apt-get install -y -q "libllvm$llvm" "lld-$llvm" libgit2-1.5 libcurl4 libssh2-1 libsqlite3-0 libssl3 gcc libc6-dev >/dev/null

  (cd "$work" && apt-get download -q "rustc-web=$ver" "cargo-web=$ver" "rust-web-src=$ver" \
      "libstd-rust-web-dev=$ver" "$std_pkg=$ver" "rust-web-llvm=$ver" >/dev/null)

  # Debian 13's wasi-libc has a real wasm32-wasip2 build (Debian 12's is preview1-only).
  # Fetched with a private apt state so the system's sources stay untouched.
  local mirror; mirror=$( { awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/*.sources 2>/dev/null
                             awk '/^deb / {print $2}' /etc/apt/sources.list 2>/dev/null; } | grep -v security | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
  echo "deb ${mirror%/} trixie main" >"$work/apt/sources.list"
  local aptopts=(-o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache"
                 -o "Dir::Etc::SourceList=$work/apt/sources.list" -o "Dir::Etc::SourceParts=/nonexistent")
  apt-get "${aptopts[@]}" update -q >/dev/null
  (cd "$work" && apt-get "${aptopts[@]}" download -q wasi-libc >/dev/null)

  as_root rm -rf "$PREFIX"
  as_root mkdir -p "$PREFIX"
  for deb in "$work"/*.deb; do as_root dpkg-deb -x "$deb" "$PREFIX"; done

  local usr="$PREFIX/usr"
  # rustc finds its sysroot from librustc_driver's location.
  as_root sh -c "mv $usr/lib/x86_64-linux-gnu/librustc_driver-*.so $usr/lib/"
  for d in "$usr/bin" "$usr/lib/rustlib/x86_64-unknown-linux-gnu/bin"; do
    as_root mkdir -p "$d"
    as_root ln -sf "/usr/bin/lld-$llvm" "$d/rust-lld"
  done
  # Only library/ is needed by -Zbuild-std.
  as_root rm -rf "$usr/src/rustc-"*/compiler "$usr/src/rustc-"*/src 2>/dev/null || true
  for t in wasm32-wasip1:wasm32-wasi wasm32-wasip2:wasm32-wasip2; do
    local target=${t%%:*} libdir="$PREFIX/usr/lib/${t##*:}"
    local dest="$usr/lib/rustlib/$target/lib/self-contained"
    as_root mkdir -p "$dest"
    as_root sh -c "ln -sf $libdir/* $dest/"
  done
  rustup toolchain link "$TOOLCHAIN_NAME" "$usr"
  rm -rf "$work"
  log "toolchain $TOOLCHAIN_NAME linked"
}

cargo_install() { # <binary> <crate> <version> [extra args]
  local bin=$1 crate=$2 version=$3; shift 3
  if command -v "$bin" >/dev/null && "$bin" --version 2>/dev/null | grep -q "$version"; then
    return
  fi
  log "installing $crate $version (takes minutes, once)"
  cargo +stable install --locked --quiet "$crate" --version "$version" "$@"
}

install_just() {
  command -v just >/dev/null && return
  log "installing just"
  if pip install --quiet rust-just 2>/dev/null; then
    hash -r
    command -v just >/dev/null && return
    # pip's script dir may not be on PATH; ~/.cargo/bin is (rustup puts it there).
    local scripts; scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)
    if [ -n "$scripts" ] && [ -x "$scripts/just" ]; then
      mkdir -p "$HOME/.cargo/bin"
      ln -sf "$scripts/just" "$HOME/.cargo/bin/just"
      return
    fi
  fi
  cargo +stable install --locked --quiet just
}

main() {
  install_just
  if has_rustup_wasip2; then
    log "using rustup's wasm32-wasip2 target"
  elif [ "${WARDEN_TRY_RUSTUP_TARGET:-1}" = 1 ] && timeout 120 rustup target add wasm32-wasip2; then
    log "installed rustup's wasm32-wasip2 target"
  else
    install_rustweb
  fi
  cargo_install wasm-tools wasm-tools "$WASM_TOOLS_VERSION"
  cargo_install cargo-component cargo-component "$CARGO_COMPONENT_VERSION"
  log "guest toolchain ready"
}

main "$@"
