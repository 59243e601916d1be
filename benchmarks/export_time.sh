#!/usr/bin/env bash
# Issue 19 item 5: how long `tk export RUN --format all --quantize all` takes, this checkout (A) against
# another checkout of tk (B, e.g. `git worktree add /tmp/export-base 10e890f`), in interleaved pairs.
#
#   benchmarks/export_time.sh RUN BASE_CHECKOUT [PAIRS]   A B A B ... (default 3 pairs), /usr/bin/time each
#   benchmarks/export_time.sh --one CHECKOUT RUN          one export, of a fresh copy of RUN, by CHECKOUT's tk
#
# Each export starts from a fresh copy of RUN (its trained model.keras, split, labels), so both sides
# convert everything. The Python is $TK_PYTHON (default: this checkout's .venv/bin/python); each side runs
# from its own checkout, so its `toolkit` package is the one imported. BENCHMARKS.md quotes the figures.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${TK_PYTHON:-$here/.venv/bin/python}"

one() {  # CHECKOUT RUN
    local checkout run copy
    checkout="$(cd "$1" && pwd)" run="$(cd "$2" && pwd)"
    copy="$(mktemp -d "${TMPDIR:-/tmp}/tk-export-time.XXXXXX")"
    trap 'rm -rf "$copy"' RETURN
    cp -a "$run" "$copy/run"
    (cd "$checkout" && "$python" -m toolkit export "$copy/run" --format all --quantize all >/dev/null)
}

if [ "${1:-}" = "--one" ]; then
    one "$2" "$3"
    exit
fi
run="${1:?usage: export_time.sh RUN BASE_CHECKOUT [PAIRS]}" base="${2:?usage: export_time.sh RUN BASE_CHECKOUT [PAIRS]}"
pairs="${3:-3}"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores;" \
    "flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_vnni|avx_vnni|amx_tile)$' | xargs)"
for i in $(seq "$pairs"); do
    for side in A B; do
        checkout="$here"; [ "$side" = B ] && checkout="$base"
        load="$(cut -d' ' -f1-3 /proc/loadavg)"
        /usr/bin/time -f "pair $i $side: wall %e s, cpu %U+%S s, max rss %M KB (load before: $load)" \
            "$0" --one "$checkout" "$run"
    done
done
