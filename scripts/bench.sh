#!/usr/bin/env bash
# labpipe against PyTorch on this machine's CPU: builds labpipe --release, then runs `labpipe bench --json`
# and scripts/bench_torch.py interleaved, both pinned to the same number of compute threads (BENCH_THREADS,
# default 2) — labpipe SimpleCNN, PyTorch SimpleCNN,
# labpipe ResNet-18, PyTorch ResNet-18 — so both see the same machine state, then the quickstart pipeline's
# data-wait share, and prints a Markdown table (the one in BENCHMARKS.md).
#
# Each measurement waits (up to BENCH_WAIT_QUIET s) for other processes to use < 10% of the CPUs and records
# the load average and the CPU share other processes took while it ran: on a shared machine, report both.
#
# Environment: PYTHON (interpreter with torch + torchvision; default python3), BENCH_THREADS (compute threads of
# both: labpipe's rayon pool, which Candle's matmuls share, through RAYON_NUM_THREADS, and PyTorch's
# torch.set_num_threads; default 2), BENCH_STEPS (timed steps, 20), BENCH_ROUNDS (repetitions of the interleaved
# sequence, 1), BENCH_WAIT_QUIET (seconds, 120), BENCH_OUT (where the JSON files go; default target/bench),
# CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
THREADS=${BENCH_THREADS:-2}
STEPS=${BENCH_STEPS:-20}
ROUNDS=${BENCH_ROUNDS:-1}
WAIT=${BENCH_WAIT_QUIET:-120}
TARGET=${CARGO_TARGET_DIR:-target}
OUT=${BENCH_OUT:-$TARGET/bench}
BIN=$TARGET/release/labpipe
# labpipe's compute threads: rayon's global pool, which Candle's CPU matmuls size themselves by too.
export RAYON_NUM_THREADS=$THREADS

"$PYTHON" -c 'import torch, torchvision' 2>/dev/null || {
  echo "error: $PYTHON cannot import torch and torchvision; set PYTHON to an interpreter that can" >&2
  exit 2
}

echo "== building labpipe --release" >&2
cargo build --release --quiet
mkdir -p "$OUT"
rm -f "$OUT"/*.json

lscpu >"$OUT/lscpu.txt" 2>/dev/null || true

for round in $(seq 1 "$ROUNDS"); do
  for model in simple_cnn resnet18; do
    case $model in
      simple_cnn) torch_keys=simplecnn_train_b128,simplecnn_eval_b256 ;;
      resnet18) torch_keys=resnet18_train_b64,resnet18_eval_b256 ;;
    esac
    echo "== round $round: labpipe $model (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    "$BIN" bench --model "$model" --steps "$STEPS" --wait-quiet "$WAIT" --device cpu --json \
      >"$OUT/labpipe_${model}_r$round.json"
    echo "== round $round: PyTorch $model (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    "$PYTHON" scripts/bench_torch.py --only "$torch_keys" --steps "$STEPS" --max-wait "$WAIT" --threads "$THREADS" \
      --out "$OUT/torch_${model}_r$round.json" >&2
  done
done
echo "== labpipe quickstart data path (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
"$BIN" bench --model pipelines/quickstart.yaml --steps "$STEPS" --wait-quiet "$WAIT" --device cpu --json \
  >"$OUT/labpipe_quickstart.json"

"$PYTHON" - "$OUT" "$ROUNDS" <<'EOF'
import json, os, sys

out, rounds = sys.argv[1], int(sys.argv[2])
load = lambda name: json.load(open(os.path.join(out, name)))
mib = lambda b: f"{b / 2**20:.0f} MiB" if b else "n/a"
share = lambda s: "n/a" if s is None else f"{100 * s:.0f}%"
# Both sides must have had the same compute threads, or the ratios compare different machines.
mismatched = [(rnd, model) for rnd in range(1, rounds + 1) for model in ("simple_cnn", "resnet18")
              if load(f"labpipe_{model}_r{rnd}.json")["threads"]["rayon"]
              != load(f"torch_{model}_r{rnd}.json")["env"]["threads"]]
if mismatched:
    sys.exit(f"error: labpipe and PyTorch ran with different thread counts in {mismatched}: not comparable")


def rate(r):
    return f"{r['median_img_per_s']:.1f} ({r['min_img_per_s']:.0f}–{r['max_img_per_s']:.0f})"


print("| model | round | labpipe train img/s | PyTorch train img/s | ratio | labpipe eval img/s | "
      "PyTorch eval img/s | ratio | other processes' CPU (labpipe / PyTorch, train · eval) |")
print("|---|---|---|---|---|---|---|---|---|")
loads, rss = [], {}
for rnd in range(1, rounds + 1):
    for model, tk, ek, name in (("simple_cnn", "simplecnn_train_b128", "simplecnn_eval_b256", "SimpleCNN b128"),
                                ("resnet18", "resnet18_train_b64", "resnet18_eval_b256", "ResNet-18 b64")):
        lp, pt = load(f"labpipe_{model}_r{rnd}.json"), load(f"torch_{model}_r{rnd}.json")
        tr = lp["train"]["median_img_per_s"] / pt[tk]["median_img_per_s"]
        er = lp["eval"]["median_img_per_s"] / pt[ek]["median_img_per_s"]
        print(f"| {name} | {rnd} | {rate(lp['train'])} | {rate(pt[tk])} | {tr:.2f} | {rate(lp['eval'])} | "
              f"{rate(pt[ek])} | {er:.2f} | {share(lp['train']['foreign_cpu_share'])} / "
              f"{share(pt[tk]['foreign_cpu_share'])} · {share(lp['eval']['foreign_cpu_share'])} / "
              f"{share(pt[ek]['foreign_cpu_share'])} |")
        loads.append((f"labpipe {model} r{rnd}", lp["machine"]["load_before"], lp["machine"]["load_after"]))
        loads.append((f"PyTorch {model} r{rnd}", pt["env"].get("load_before"), pt["env"].get("load_after")))
        if model == "resnet18":
            rss.setdefault("labpipe", []).append(lp["peak_rss_train_bytes"])
            rss.setdefault("PyTorch", []).append(pt[tk]["ru_maxrss_bytes"])
lp = load("labpipe_resnet18_r1.json")
pt = load("torch_resnet18_r1.json")
print()
print("Peak RSS of a ResNet-18 batch-64 training process (after the training steps, before evaluation): "
      f"labpipe {', '.join(mib(b) for b in rss['labpipe'])} (VmHWM), "
      f"PyTorch {', '.join(mib(b) for b in rss['PyTorch'])} (ru_maxrss).")
print(f"Threads: labpipe rayon {lp['threads']['rayon']}, Candle elementwise {lp['threads']['candle_elementwise']}; "
      f"PyTorch {pt['env']['threads']} (torch {pt['env']['torch']}). "
      f"CPU: {lp['machine']['cpu']}, {lp['machine']['cores']} cores.")
q = load("labpipe_quickstart.json")
d = q["data_wait"]
print(f"Quickstart data wait: {100 * d['share']:.1f}% of a {d['epoch_seconds']:.1f} s epoch "
      f"({d['batches']} batches of {d['batch']}, {d['workers']} data workers, augment {'+'.join(d['augment'])}, "
      f"{d['img_per_s']:.0f} img/s with data; target < 5%); other processes' CPU during its step timing "
      f"{share(q['train']['foreign_cpu_share'])}.")
fmt = lambda l: "n/a" if not l else " ".join(f"{v:.2f}" for v in l)
print("Load average (1/5/15 min) before → after each measurement: "
      + "; ".join(f"{n}: {fmt(a)} → {fmt(b)}" for n, a, b in loads) + ".")
EOF
