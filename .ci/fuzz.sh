#!/usr/bin/env bash
# Coverage-guided fuzzing of the spec reader and of the JSON request bodies (fuzz/, see
# docs/TESTING.md). Builds the targets with libFuzzer's instrumentation on the stable toolchain
# (the sanitizer-coverage passes asked for with -C flags: no nightly, no cargo-fuzz), then runs
# each for a fixed time and fails on any crash, timeout or memory blow-up, printing how many
# inputs each target ran.
#
#   .ci/fuzz.sh [SECONDS] [TARGET...]     SECONDS per target (default $FUZZ_SECONDS, else 120);
#                                         targets: spec wire (default both)
#
# Environment: FUZZ_SECONDS, FUZZ_JOBS (libFuzzer processes per target, default 1),
# FUZZ_TARGET_DIR (default fuzz/target), FUZZ_ARGS (more libFuzzer flags).
# What a run finds is left in fuzz/artifacts/<target>/; the working corpus grows in
# fuzz/work/<target>/ (seeded from the committed fuzz/corpus/<target>/), both ignored by git.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-${FUZZ_SECONDS:-120}}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(spec wire)
jobs=${FUZZ_JOBS:-1}

host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target}
# What cargo-fuzz passes, spelled for a stable compiler. The explicit --target keeps these flags
# off build scripts and proc macros, which are not linked with libFuzzer.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  -Cdebug-assertions -Coverflow-checks -Cforce-frame-pointers=yes"

echo "==> building fuzz targets (${targets[*]}) for $host"
build=()
for t in "${targets[@]}"; do build+=(--bin "$t"); done
cargo build --locked --release --target "$host" "${build[@]}"
bin=$CARGO_TARGET_DIR/$host/release

status=0
summary=()
for t in "${targets[@]}"; do
  work=work/$t
  artifacts=artifacts/$t
  mkdir -p "$work" "$artifacts"
  dict=()
  [ -f "dict/$t.dict" ] && dict=(-dict="$PWD/dict/$t.dict")
  log=$artifacts/run.log
  rm -f "$log" "$artifacts"/fuzz-*.log
  echo "==> fuzzing $t for ${seconds}s (${jobs} process(es); log in fuzz/$log)"
  # -timeout: one input may take at most 10 s; -rss_limit_mb: at most 2 GiB; any of those, or
  # a crash, ends the run with a non-zero status. Corpus: the working one first (new inputs go
  # there), then the committed seeds. With several jobs each writes fuzz-N.log where it runs.
  set +e
  (cd "$artifacts" && "$bin/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix=./ "${dict[@]}" ${FUZZ_ARGS:-} \
    $([ "$jobs" -gt 1 ] && echo "-jobs=$jobs -workers=$jobs") \
    "$OLDPWD/$work" "$OLDPWD/corpus/$t" >run.log 2>&1)
  rc=$?
  cat "$artifacts"/fuzz-*.log >>"$log" 2>/dev/null
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | awk '{s += $1} END {print s + 0}')
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | awk '{s += $1} END {print s + 0}')
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true)
  line="$t: $runs inputs ($rate/s; budget ${seconds}s), ${cov:-no coverage line}, exit $rc"
  summary+=("$line")
  if [ "$rc" -ne 0 ]; then
    status=1
    echo "!! $t failed (exit $rc); the input is in fuzz/$artifacts/:"
    grep -E -A30 'ERROR: libFuzzer|panicked at|==[0-9]+== ERROR' "$log" | head -n 60 || tail -n 40 "$log"
    ls -l "$artifacts" | grep -Ev 'run.log|fuzz-[0-9]+.log' || true
  fi
done

echo "==> fuzzing summary"
printf '  %s\n' "${summary[@]}"
exit "$status"
