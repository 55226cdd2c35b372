#!/usr/bin/env bash
# Prepared check for a GPU machine (NVIDIA driver, CUDA 13 libraries and PyTorch in its Python; no Rust, no
# network) of a labpipe binary built elsewhere with `--features cuda` (see .ci/cuda-check):
#   throughput of SimpleCNN (batch 128) and ResNet-18 (batch 64) with --device cuda and --device cpu, the first
#   epoch's train loss on CPU vs CUDA (float32 tolerance), PyTorch on the same card, and a Markdown table for
#   BENCHMARKS.md. About 3-6 minutes; every labpipe run has its own timeout.
#
#   scripts/cuda/gpu_check.sh [--bin PATH] [--out DIR] [--cpu-only] [-- extra gpu_check.py options]
#
#   --bin PATH   the labpipe binary, or it gzipped (default: target/cuda/labpipe-cuda.gz, from
#                `.ci/cuda-check --release`)
#   --out DIR    where gpu_check.md / gpu_check.json go (default: $OUT when set, else ./gpu-check-out)
#   --cpu-only   no GPU needed: runs everything on the CPU with small sizes, to prove the plumbing
#   --tests PATH also run labpipe's CUDA kernel tests (`cuda::` in the library's test binary, built with
#                `cargo test --release --features cuda --lib --no-run`; may be gzipped) first
# Environment: PYTHON (default python3), LABPIPE_CUDA_LIBS (extra library folders, searched first).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=$repo/target/cuda/labpipe-cuda.gz
out=${OUT:-$PWD/gpu-check-out}
cpu_only=0
tests=
extra=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --bin) bin=${2:?--bin needs a path}; shift 2 ;;
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    --cpu-only) cpu_only=1; shift ;;
    --tests) tests=${2:?--tests needs a path}; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown option \`$1\` (see --help)" >&2; exit 2 ;;
  esac
done
say() { echo "gpu-check: $*" >&2; }
die() { echo "gpu-check: error: $*" >&2; exit 1; }

PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || die "no \`$PYTHON\` on PATH (set PYTHON=/path/to/python with torch)"
[[ -f $bin ]] || die "no labpipe binary at $bin: build one with \`.ci/cuda-check --release\` (target/cuda/labpipe-cuda.gz) and carry it, or pass --bin"

work=$(mktemp -d "${TMPDIR:-/tmp}/labpipe-gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
# shellcheck source=gpu_env.sh
source "$here/gpu_env.sh"

card=
if [[ $cpu_only == 0 ]]; then
  command -v nvidia-smi >/dev/null || die "no nvidia-smi: is this a GPU machine? (use --cpu-only to test the plumbing)"
  card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)
  [[ -n $card ]] || die "nvidia-smi lists no GPU"
  say "card: $card, driver $driver"
  missing=$(ldd "$bin" | grep 'not found' || true)
  [[ -z $missing ]] || die "the binary needs libraries not found here (add their folder to LABPIPE_CUDA_LIBS):
$missing"
  libcuda=$(ldd "$bin" | awk '/libcuda\.so/ {print $3}')
  case $libcuda in
    */stubs/*) die "libcuda resolves to a stub ($libcuda); remove the stub folder from LD_LIBRARY_PATH" ;;
  esac
  say "libcuda: ${libcuda:-(not linked: a cpu-only build?)}"
  [[ -n $libcuda ]] || die "$bin was not built with --features cuda (it does not link libcuda)"
  sizes=()
else
  say "--cpu-only: every run on the CPU, small sizes"
  sizes=(--train-size 512 --throughput-epochs 1 --parity-size 256 --torch-steps 5)
fi

mkdir -p "$out"
t0=$SECONDS
status=0
if [[ -n $tests ]]; then
  if [[ $tests == *.gz ]]; then
    gzip -dc "$tests" >"$work/labpipe-tests" || die "could not gunzip $tests"
    tests=$work/labpipe-tests
  fi
  chmod +x "$tests" 2>/dev/null || { cp "$tests" "$work/labpipe-tests"; tests=$work/labpipe-tests; chmod +x "$tests"; }
  say "CUDA kernel tests: $tests cuda::"
  if ! (cd "$repo" && timeout 300 "$tests" cuda:: --test-threads 1 --nocapture 2>&1 | tee "$out/cuda_tests.log"; exit "${PIPESTATUS[0]}"); then
    say "FAILED: the CUDA kernel tests (see $out/cuda_tests.log)"
    status=1
  fi
  grep -q SKIPPED "$out/cuda_tests.log" && [[ $cpu_only == 0 ]] && { say "FAILED: kernel tests skipped on a GPU machine"; status=1; }
fi
args=(--bin "$bin" --work "$work" --out "$out" --card "$card" "${sizes[@]}" "${extra[@]}")
[[ $cpu_only == 1 ]] && args+=(--cpu-only)
"$PYTHON" "$here/gpu_check.py" "${args[@]}" || status=1
say "finished in $((SECONDS - t0)) s; results in $out/gpu_check.md and $out/gpu_check.json"
if [[ $status != 0 ]]; then
  say "FAILED (exit $status)"
fi
exit $status
