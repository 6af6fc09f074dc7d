#!/usr/bin/env bash
# Refreshes templates/Cargo.lock.deps, the third-party part of every generated workspace's
# Cargo.lock, after the generated crates' dependencies change: generates an example
# workspace, lets Cargo add what its lockfile lacks (keeping every version it already pins;
# `--fresh` resolves everything anew) and keeps every package but the workspace's own.
set -euo pipefail
fresh=${1:-}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --quiet --manifest-path "$root/Cargo.toml"
"$root/target/debug/bulwark" generate "$root/specs/ledgerly.yaml" --out "$work/ws" >/dev/null
if [ "$fresh" = "--fresh" ]; then
    (cd "$work/ws" && cargo generate-lockfile --quiet)
else
    (cd "$work/ws" && cargo metadata --format-version 1 >/dev/null)
fi
python3 - "$work/ws/Cargo.lock" "$root/templates/Cargo.lock.deps" <<'PY'
import sys
lock, out = sys.argv[1], sys.argv[2]
blocks = open(lock).read().split("\n\n")
members = {"ledgerly-api", "ledgerly-server", "ledgerly-client"}
kept = [b.strip() for b in blocks
        if b.strip().startswith("[[package]]")
        and not any(f'name = "{m}"\n' in b for m in members)]
open(out, "w").write("\n\n".join(kept) + "\n")
PY
echo "templates/Cargo.lock.deps: $(grep -c '^\[\[package\]\]' "$root/templates/Cargo.lock.deps") packages"
