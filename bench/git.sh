#!/usr/bin/env bash
# Generate-and-commit benchmark (`generate --git`): for synthetic specs of 10, 200 and 1000
# resources (bench/synth.py), the time of a first generation committed to a new bare
# repository (empty formatting cache), and at 200 resources the time of a regeneration
# after a one-field change (a new optional field on one resource: its files, the manifest
# and a new migration change; the cache is warm from the first generation only, as on an
# engineer's machine after editing the spec).
# Prints a markdown table of medians and the machine's context.
#
#   bench/git.sh                            # sizes 10 200 1000, 5 runs each
#   BENCH_SIZES="10 200" BENCH_RUNS=3 bench/git.sh
#
# Environment: BENCH_SIZES (default "10 200 1000"), BENCH_RUNS (default 5), BENCH_CHANGE_SIZE
# (default 200; empty to skip the one-field change). Needs cargo, rustfmt, python3 and git.
# Everything it writes goes to one temporary directory, removed on exit.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sizes="${BENCH_SIZES:-10 200 1000}"
runs="${BENCH_RUNS:-5}"
change_size="${BENCH_CHANGE_SIZE-200}"

command -v python3 >/dev/null || { echo "error: python3 is needed" >&2; exit 2; }
command -v git >/dev/null || { echo "error: git is needed" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/bulwark-git-bench.XXXXXX")"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building the release binary..." >&2
(cd "$root" && cargo build --release --quiet)
bin="$root/target/release/bulwark"

all_sizes="$sizes"
if [[ -n "$change_size" ]]; then all_sizes="$sizes $change_size"; fi
# shellcheck disable=SC2086  # a list of words on purpose
python3 "$root/bench/synth.py" $all_sizes --out "$work/specs" >/dev/null

results="$work/results.tsv"
: >"$results"

# commit KIND N SPEC REPO: one `generate --git`, timed; appends a line to the results.
commit() {
    local kind="$1" n="$2" spec="$3" repo="$4"
    local start end
    start="$(date +%s.%N)"
    "$bin" --format json generate "$spec" --git "$repo" --branch bulwark/generated \
        --commit-time 1700000000 >"$work/out.json"
    end="$(date +%s.%N)"
    python3 - "$kind" "$n" "$start" "$end" "$work/out.json" >>"$results" <<'PY'
import json, sys
kind, n, start, end, path = sys.argv[1:]
out = json.load(open(path))
assert out["ok"] and out["commit"], out
t = out["timings"]
changes = out["changes"]
changed = len(changes["added"]) + len(changes["modified"]) + len(changes["removed"])
print("\t".join(str(x) for x in (
    kind, n, float(end) - float(start), t["load_ms"], t["render_ms"], t["rustfmt_ms"],
    t["commit_ms"], changed)))
PY
}

for n in $sizes; do
    for ((i = 1; i <= runs; i++)); do
        echo "generate and commit: $n resources, run $i/$runs" >&2
        repo="$work/repo-$n-$i"
        git init -q --bare "$repo"
        export BULWARK_CACHE_DIR="$work/cache-$n-$i"
        commit first "$n" "$work/specs/synth-$n.yaml" "$repo"
        rm -rf "$repo" "$BULWARK_CACHE_DIR"
    done
done

if [[ -n "$change_size" ]]; then
    spec="$work/specs/synth-$change_size.yaml"
    changed="$work/specs/synth-$change_size-changed.yaml"
    # One new optional field on the first resource.
    python3 - "$spec" "$changed" <<'PY'
import sys
text = open(sys.argv[1]).read()
marker = "    fields:\n"
at = text.index(marker) + len(marker)
open(sys.argv[2], "w").write(text[:at] + "      bench_note: { type: text, optional: true }\n" + text[at:])
PY
    for ((i = 1; i <= runs; i++)); do
        echo "one-field change: $change_size resources, run $i/$runs" >&2
        repo="$work/change-$i"
        git init -q --bare "$repo"
        # A cache of this run's own, warmed by the first generation only: the changed
        # files are new to it, as after a real spec edit (a cache shared between runs
        # would already hold them from the run before).
        export BULWARK_CACHE_DIR="$work/cache-change-$i"
        "$bin" --format json generate "$spec" --git "$repo" --branch bulwark/generated >/dev/null
        commit change "$change_size" "$changed" "$repo"
        rm -rf "$repo" "$BULWARK_CACHE_DIR"
    done
fi

echo
echo "- machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "- $(rustfmt --version); $(git --version); bulwark $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$root" && git diff --quiet HEAD -- src 2>/dev/null || echo ' + uncommitted changes in src/')"
echo "- runs per row: $runs; medians"
echo

python3 - "$results" <<'PY'
import statistics, sys
from collections import defaultdict

rows = defaultdict(list)
for line in open(sys.argv[1]):
    kind, n, wall, load, render, fmt, commit, changed = line.split("\t")
    rows[(kind, int(n))].append(dict(
        wall=float(wall), load=float(load), render=float(render), fmt=float(fmt),
        commit=float(commit), changed=int(changed)))

def med(r, key):
    return statistics.median(x[key] for x in r)

print("| run | resources | median end-to-end s | load ms | render ms | rustfmt ms | commit ms | paths changed | runs |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for (kind, n), r in sorted(rows.items(), key=lambda kv: (kv[0][0] != "first", kv[0][1])):
    what = "first generation, new repository" if kind == "first" else "regeneration after a one-field change"
    print(f"| {what} | {n} | {med(r, 'wall'):.2f} | {med(r, 'load'):.0f} | {med(r, 'render'):.0f} "
          f"| {med(r, 'fmt'):.0f} | {med(r, 'commit'):.0f} | {int(med(r, 'changed'))} | {len(r)} |")
PY
