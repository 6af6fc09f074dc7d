#!/usr/bin/env bash
# Generation benchmark: builds the release binary, writes synthetic specs with
# bench/synth.py, generates each one several times into a fresh directory, and prints a
# markdown table of medians (end-to-end wall time and peak RSS from /usr/bin/time, render
# and rustfmt time from the CLI's JSON `timings`), plus a no-change regeneration row and the
# time rustfmt alone takes on each size's output.
#
#   bench/generate.sh                      # sizes 10 50 200 1000, 7 runs (5 for 1000)
#   BENCH_SIZES="10 200" BENCH_RUNS=3 bench/generate.sh     # a quicker look
#
# Environment: BENCH_SIZES (default "10 50 200 1000"), BENCH_RUNS (runs per size, default
# 7), BENCH_RUNS_LARGE (runs for sizes above 200, default 5), BENCH_REGEN_SIZE (default 200;
# empty to skip the regeneration row), BENCH_TIMEOUT (seconds per generation, default 300).
# Needs cargo, rustfmt, python3 and GNU time at /usr/bin/time. Everything it writes goes to
# one temporary directory, removed on exit.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sizes="${BENCH_SIZES:-10 50 200 1000}"
runs="${BENCH_RUNS:-7}"
runs_large="${BENCH_RUNS_LARGE:-5}"
regen_size="${BENCH_REGEN_SIZE-200}"
limit="${BENCH_TIMEOUT:-300}"
gnu_time=/usr/bin/time

[[ -x "$gnu_time" ]] || { echo "error: GNU time is needed at $gnu_time" >&2; exit 2; }
command -v python3 >/dev/null || { echo "error: python3 is needed" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/bulwark-bench.XXXXXX")"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building the release binary..." >&2
(cd "$root" && cargo build --release --quiet)
bin="$root/target/release/bulwark"

# shellcheck disable=SC2086  # sizes is a list of words on purpose
python3 "$root/bench/synth.py" $sizes --out "$work/specs" >/dev/null
for n in $sizes; do
    "$bin" validate "$work/specs/synth-$n.yaml" >&2
done

results="$work/results.tsv"
: >"$results"

# run KIND N SPEC OUT: one generation, appends a line to the results.
run() {
    local kind="$1" n="$2" spec="$3" out="$4"
    if ! "$gnu_time" -f '%e %M' -o "$work/time.txt" \
        timeout "$limit" "$bin" --format json generate "$spec" --out "$out" >"$work/out.json"; then
        echo "error: generation of $spec failed or timed out:" >&2
        cat "$work/out.json" "$work/time.txt" >&2 || true
        exit 1
    fi
    local files
    files="$(find "$out" -type f -not -path '*/.bulwark/staging-*' | wc -l)"
    python3 - "$kind" "$n" "$files" "$work/time.txt" "$work/out.json" >>"$results" <<'PY'
import json, sys
kind, n, files, time_path, json_path = sys.argv[1:]
# The last line of the -o file is ours (a failing command may add a line before it).
wall, rss_kb = open(time_path).read().split("\n")[-2].split()
out = json.load(open(json_path))
t = out["timings"]
print("\t".join(str(x) for x in (
    kind, n, files, wall, rss_kb, t["load_ms"], t["render_ms"], t["rustfmt_ms"],
    t["write_ms"], len(out["written"]),
)))
PY
}

for n in $sizes; do
    count="$runs"
    if ((n > 200)); then count="$runs_large"; fi
    for ((i = 1; i <= count; i++)); do
        echo "generate: $n resources, run $i/$count" >&2
        out="$work/out-$n-$i"
        # A first generation: nothing formatted or validated before in the cache. Its
        # scratch folders stay (rustfmt's working copies, overwritten by every generation,
        # as on a machine that has generated before; none the first time).
        export BULWARK_CACHE_DIR="$work/cache"
        rm -rf "$BULWARK_CACHE_DIR/rustfmt-packs" "$BULWARK_CACHE_DIR/policies"
        run first "$n" "$work/specs/synth-$n.yaml" "$out"
        # Kept until the end: removing thousands of files between runs slows creating the
        # next run's on some file systems (ext4 looks past recently freed inodes).
    done
done

# rustfmt by itself on each size's output, as bulwark splits it (one process per core, files
# dealt by size): the part of a first generation that no change to bulwark can remove.
floors="$work/floors.tsv"
: >"$floors"
for n in $sizes; do
    echo "rustfmt alone: $n resources" >&2
    python3 - "$n" "$work/out-$n-1" "$runs" >>"$floors" <<'PY'
import os, statistics, subprocess, sys, time
n, out, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
# The files rustfmt starts from (crate roots and test, benchmark and binary targets); each
# reaches the modules it declares. A root's weight, to deal them into groups by size as
# bulwark does, is its own size and that of the other files in its folder and below, a
# library's root taking them before a binary's.
rs = []
for folder, dirs, names in os.walk(out):
    dirs[:] = [d for d in dirs if d not in (".bulwark", "target")]
    rs += [os.path.join(folder, name) for name in names if name.endswith(".rs")]
roots = [p for p in rs if os.path.basename(p) in ("lib.rs", "main.rs")
         or os.path.basename(os.path.dirname(p)) in ("tests", "benches", "bin")]
weight = {root: os.path.getsize(root) for root in roots}
for path in set(rs) - set(roots):
    owners = [r for r in roots if path.startswith(os.path.dirname(r) + "/")]
    owner = max(owners, key=lambda r: (len(os.path.dirname(r)), r.endswith("lib.rs")))
    weight[owner] += os.path.getsize(path)
cores = os.cpu_count() or 2
groups = [[0, []] for _ in range(cores)]
for root in sorted(roots, key=lambda r: -weight[r]):
    lightest = min(groups, key=lambda g: g[0])
    lightest[0] += weight[root]
    lightest[1].append(root)
times = []
for _ in range(runs):
    start = time.perf_counter()
    procs = [subprocess.Popen(["rustfmt", "--check", *g[1]], stdout=subprocess.DEVNULL)
             for g in groups if g[1]]
    if any(p.wait() != 0 for p in procs):
        sys.exit(f"rustfmt --check failed on the output of {n} resources")
    times.append(time.perf_counter() - start)
print(f"{n}\t{statistics.median(times)}")
PY
done

if [[ -n "$regen_size" ]]; then
    spec="$work/specs/synth-$regen_size.yaml"
    [[ -f "$spec" ]] || python3 "$root/bench/synth.py" "$regen_size" --out "$work/specs" >/dev/null
    out="$work/regen-$regen_size"
    # The regeneration keeps the cache the initial generation filled.
    export BULWARK_CACHE_DIR="$work/cache-regen"
    echo "regenerate: $regen_size resources, initial generation (not counted)" >&2
    "$bin" --format json generate "$spec" --out "$out" >/dev/null
    for ((i = 1; i <= runs; i++)); do
        echo "regenerate: $regen_size resources, run $i/$runs" >&2
        run regen "$regen_size" "$spec" "$out"
    done
    rm -rf "$out"
fi

# Context for the reader: the machine, the toolchain, the code measured.
echo
echo "- machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "- $(rustfmt --version); bulwark $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$root" && git diff --quiet HEAD -- src 2>/dev/null || echo ' + uncommitted changes in src/')"
echo "- runs per size: $runs ($runs_large above 200 resources); medians"
echo

python3 - "$results" "$floors" <<'PY'
import statistics, sys
from collections import defaultdict

rows = defaultdict(list)
for line in open(sys.argv[1]):
    kind, n, files, wall, rss, load, render, fmt, write, written = line.split("\t")
    rows[(kind, int(n))].append(dict(
        files=int(files), wall=float(wall), rss=int(rss) / 1024, load=float(load),
        render=float(render), fmt=float(fmt), write=float(write), written=int(written)))

def med(runs, key):
    return statistics.median(r[key] for r in runs)

first = sorted(n for kind, n in rows if kind == "first")
base = first[0] if first else None

def ratio(n, key):
    # Time per resource relative to the smallest size: 1.00 = linear, < 1 = fixed costs
    # amortised, > 1 = growing faster than the number of resources.
    b = med(rows[("first", base)], key) / base
    return f"{med(rows[('first', n)], key) / n / b:.2f}"

print(f"| resources | files | median end-to-end s | median render ms | median rustfmt ms "
      f"| median peak RSS MB | e2e s/resource vs {base} | render ms/resource vs {base} "
      f"| rustfmt ms/resource vs {base} | median load ms | median write ms | runs |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in first:
    r = rows[("first", n)]
    print(f"| {n} | {r[0]['files']} | {med(r, 'wall'):.2f} | {med(r, 'render'):.0f} "
          f"| {med(r, 'fmt'):.0f} | {med(r, 'rss'):.0f} | {ratio(n, 'wall')} "
          f"| {ratio(n, 'render')} | {ratio(n, 'fmt')} | {med(r, 'load'):.0f} "
          f"| {med(r, 'write'):.0f} | {len(r)} |")
for (kind, n), r in sorted(rows.items()):
    if kind != "regen":
        continue
    changed = max(x["written"] for x in r)
    note = "no-change" if changed == 0 else f"CHANGED ({changed} files rewritten)"
    print(f"| {n} ({note} regeneration) | {r[0]['files']} | {med(r, 'wall'):.2f} "
          f"| {med(r, 'render'):.0f} | {med(r, 'fmt'):.0f} | {med(r, 'rss'):.0f} | | | "
          f"| {med(r, 'load'):.0f} | {med(r, 'write'):.0f} | {len(r)} |")
floors = dict(line.split("\t") for line in open(sys.argv[2]))
if floors:
    print()
    print("rustfmt alone (`rustfmt --check` on the output, one process per core, median s): "
          + ", ".join(f"{n} resources {float(floors[str(n)]):.2f}" for n in first
                      if str(n) in floors))
if len(first) >= 3:
    a, b = first[-2], first[-1]
    def per(n, key):
        return med(rows[("first", n)], key) / n
    print()
    print(f"Per-resource cost at {b} relative to {a} (1.00 = linear): "
          f"end-to-end {per(b, 'wall') / per(a, 'wall'):.2f}, "
          f"render {per(b, 'render') / per(a, 'render'):.2f}, "
          f"rustfmt {per(b, 'fmt') / per(a, 'fmt'):.2f}, "
          f"write {per(b, 'write') / per(a, 'write'):.2f}, "
          f"peak RSS {per(b, 'rss') / per(a, 'rss'):.2f}")
PY
