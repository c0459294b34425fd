# Warden tasks. `just` alone lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

export PATH := env_var("HOME") + "/.cargo/bin:" + env_var("PATH")

default:
    @just --list

# Install what guest builds need (idempotent; seconds when done).
setup:
    bash guest-modules/toolchain/setup.sh

# Build every guest component into guest-modules/target/wasm32-wasip2/release.
build-guests: setup
    bash guest-modules/build.sh

# Build the warden binary.
build:
    cargo build --release -p warden-runtime

# The main job: warden serve on embedded defaults, the examples uploaded
# through the API and exercised; the server keeps running (Ctrl-C stops it).
demo: build-guests build
    bash guest-modules/examples/serve-demo.sh

# The broker examples (Kafka, RabbitMQ, Redis from tests/services.sh).
demo-brokers: build-guests build
    bash tests/services.sh
    bash guest-modules/examples/brokers-demo.sh

# A server on embedded defaults (data in ./.warden), or with a host config.
serve *args: build
    ${CARGO_TARGET_DIR:-target}/release/warden serve {{args}}

# Each example once with `warden run`, plus a few refusals.
run-examples: build-guests build
    #!/usr/bin/env bash
    set -euo pipefail
    warden="${CARGO_TARGET_DIR:-target}/release/warden"
    guests=guest-modules/target/wasm32-wasip2/release
    echo "== hello: reads its [config] through wasi:config"
    $warden run $guests/hello.wasm --manifest guest-modules/examples/hello/warden.toml
    echo "== fs-report: reads a read-only grant, writes into a read-write grant"
    $warden run $guests/fs_report.wasm --manifest guest-modules/examples/fs-report/warden.toml
    echo "   wrote guest-modules/target/fs-report-output/report.txt"
    echo "== http-hello: a wasi:http handler, one request"
    $warden run $guests/http_hello.wasm --manifest guest-modules/examples/http-hello/warden.toml --http POST /hello/demo --body "ping"
    echo
    echo "== todo: SQL through a granted handle (SQLite from examples/host.toml)"
    todo="$warden run $guests/todo.wasm --manifest guest-modules/examples/todo/warden.toml --config guest-modules/examples/host.toml"
    id=$($todo --invoke add --arg '"try warden"' | sed 's/[^0-9]//g')
    $todo --invoke complete --arg "$id" >/dev/null
    $todo
    echo "== counter: Redis keys under its granted prefix"
    if (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
      $warden run $guests/counter.wasm --manifest guest-modules/examples/counter/warden.toml --config guest-modules/examples/host.toml
    else
      echo "   (skipped: no Redis on 127.0.0.1:6379; tests/services.sh starts it)"
    fi
    echo "== the sandbox at work (each of these is refused)"
    $warden run $guests/fs_report.wasm --manifest guest-modules/examples/demo-denials/fs-report-ungranted.toml || true
    $warden run $guests/limits.wasm --manifest guest-modules/examples/demo-denials/spin.toml || true
    $warden check $guests/net_probe.wasm --manifest guest-modules/examples/demo-denials/no-net.toml || true

# Every test: unit, integration (real guests, real runtime, real services), CLI.
test: build-guests
    bash tests/services.sh
    cargo test --workspace

# Formatting and lints, as CI wants them.
lint:
    cargo fmt --all --check
    cd guest-modules && cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Instantiation and call benchmarks (numbers go to BENCHMARKS.md).
bench: build-guests
    cargo bench -p warden-runtime --bench instantiate
    bash tests/services.sh
    cargo bench -p warden-runtime --bench capabilities
    cargo bench -p warden-runtime --bench brokers
    cargo bench -p warden-runtime --bench serve
