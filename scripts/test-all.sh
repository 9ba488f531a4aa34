#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit and end-to-end tests
# with the real cargo and rustc. Installs what the tests need when it is
# missing, and reuses it when present.
set -euo pipefail
cd "$(dirname "$0")/.."

need_component() {
    if ! cargo "$1" --version >/dev/null 2>&1; then
        echo "== installing rustup component $2"
        rustup component add "$2"
    fi
}
need_component fmt rustfmt
need_component clippy clippy

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== storage servers (Redis, Memcached, S3, Azurite, GCS emulator, WebDAV)"
bash scripts/services.sh start
trap 'bash scripts/services.sh stop' EXIT
set -a
eval "$(bash scripts/services.sh env)"
set +a

echo "== cargo test"
# The end-to-end tests start their own daemons in private directories.
cargo test --workspace --locked
