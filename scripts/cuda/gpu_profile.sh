#!/usr/bin/env bash
# Where a `--features cuda` labpipe binary spends a training step on a GPU machine (no Rust, no network):
#   1. `labpipe bench` ablations: ResNet-18 with Adam vs plain SGD (the optimizer's share), batch 16/64/256
#      (fixed per-step overhead vs per-image work), SimpleCNN, each 10 timed steps;
#   2. a kernel-level profile of ResNet-18 training steps with Nsight Systems (`nsys`) when the machine has it,
#      else per-kernel GPU times from Nsight Compute (`ncu`) for a window of launches after the warm-up.
# Results: $OUT (or --out DIR): profile.md (the bench table), nsys/ncu summaries. About 2-3 minutes.
#
#   scripts/cuda/gpu_profile.sh [--bin PATH] [--out DIR]      (PROFILE_DEVICE=cpu: the benches on the CPU, to test)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=$repo/target/cuda/labpipe-cuda.gz
out=${OUT:-$PWD/gpu-profile-out}
while [[ $# -gt 0 ]]; do
  case $1 in
    --bin) bin=${2:?--bin needs a path}; shift 2 ;;
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "gpu-profile: unknown option \`$1\` (see --help)" >&2; exit 2 ;;
  esac
done
say() { echo "gpu-profile: $*" >&2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/labpipe-gpu-profile.XXXXXX")
trap 'rm -rf "$work"' EXIT
# shellcheck source=gpu_env.sh
source "$here/gpu_env.sh"
mkdir -p "$out"

pipeline() { # name arch batch optimizer
  cat >"$work/$1.yaml" <<YAML
name: $1
data: {dataset: synthetic, train_size: 512, test_size: 64, val_split: 64}
model: {arch: $2, num_classes: 10}
train: {epochs: 1, batch_size: $3, optimizer: {name: $4, lr: 0.001}, seed: 0}
YAML
  echo "$work/$1.yaml"
}
{
  echo "| target | batch | optimizer | train img/s | train ms/step | eval img/s |"
  echo "| --- | ---: | --- | ---: | ---: | ---: |"
} >"$out/profile.md"
bench() { # name arch batch optimizer
  local p j
  p=$(pipeline "$@")
  if j=$(timeout 120 "$bin" bench --model "$p" --steps 10 --device "${PROFILE_DEVICE:-cuda}" --no-data-wait --json 2>"$work/err"); then
    python3 - "$j" "$1" "$3" "$4" >>"$out/profile.md" <<'PY'
import json, sys
j = json.loads(sys.argv[1]); t, e = j["train"], j["eval"]
print(f"| {sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} | {t['median_img_per_s']:.0f} | "
      f"{1000 * t['median_step_s']:.2f} | {e['median_img_per_s']:.0f} |")
PY
  else
    say "bench $1 failed:"; tail -5 "$work/err" >&2
  fi
}
t0=$SECONDS
bench resnet18-adam-b64 resnet18 64 adam
bench resnet18-sgd-b64 resnet18 64 sgd
bench resnet18-adam-b16 resnet18 16 adam
bench resnet18-adam-b256 resnet18 256 adam
bench simplecnn-adam-b128 simple_cnn 128 adam
bench simplecnn-sgd-b128 simple_cnn 128 sgd
cat "$out/profile.md"
say "benches took $((SECONDS - t0)) s"

p=$(pipeline prof resnet18 64 adam)
nsys=$(command -v nsys || ls /usr/local/cuda*/bin/nsys /opt/nvidia/nsight-systems*/bin/nsys 2>/dev/null | head -1 || true)
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1 || true)
if [[ -n $nsys ]]; then
  say "nsys: $nsys"
  timeout 180 "$nsys" profile -o "$work/prof" --force-overwrite true --trace cuda "$bin" bench --model "$p" \
    --steps 10 --device cuda --no-data-wait --json >/dev/null 2>"$work/nsys.err" || { tail -5 "$work/nsys.err" >&2; }
  timeout 120 "$nsys" stats --report cuda_gpu_kern_sum,cuda_api_sum --format csv --output "$out/nsys" \
    "$work/prof.nsys-rep" >/dev/null 2>&1 || say "nsys stats failed"
  for f in "$out"/nsys*.csv; do [[ -f $f ]] && { echo "== $f"; head -25 "$f"; }; done
elif [[ -n $ncu ]]; then
  say "no nsys; ncu: $ncu (per-kernel GPU time for a window of launches)"
  timeout 240 "$ncu" --metrics gpu__time_duration.sum --csv --launch-skip 4000 --launch-count 3000 "$bin" bench \
    --model "$p" --steps 4 --warmup 2 --device cuda --no-data-wait --json >"$work/ncu.csv" 2>"$work/ncu.err" \
    || tail -5 "$work/ncu.err" >&2
  python3 - "$work/ncu.csv" >"$out/ncu_kernels.md" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]; ki, vi = head.index("Kernel Name"), head.index("Metric Value")
tot, cnt = collections.Counter(), collections.Counter()
for r in rows[1:]:
    name = r[ki].split("(")[0][:60]
    try:
        v = float(r[vi].replace(",", ""))
    except ValueError:
        continue
    tot[name] += v; cnt[name] += 1
all_ns = sum(tot.values())
print(f"kernels: {sum(cnt.values())}, GPU time {all_ns / 1e6:.2f} ms")
for name, v in tot.most_common(30):
    print(f"{v / 1e6:8.3f} ms {100 * v / all_ns:5.1f}% {cnt[name]:5d}x {name}")
PY
  cat "$out/ncu_kernels.md"
else
  say "neither nsys nor ncu found: kernel profile skipped"
fi
say "finished in $((SECONDS - t0)) s"
