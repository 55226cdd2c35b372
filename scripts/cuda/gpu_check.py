"""GPU check of a `--features cuda` labpipe binary: throughput, CPU/CUDA loss parity, PyTorch on the same card.

Called by gpu_check.sh (which sets up the CUDA libraries); run that, not this. Needs only the standard library,
plus torch for the PyTorch column (skipped with a message when torch is missing).

What it does, per model (SimpleCNN batch 128, ResNet-18 batch 64, both on the `synthetic` dataset):
  1. `labpipe run --device cuda` on a generated pipeline: the throughput run (images/s from history.json).
  2. `labpipe run --device cpu` and `--device cuda` on one small pipeline: the first epoch's mean train loss
     must agree to float32 tolerance (both use the same host-side seeds, data order and dropout masks).
  3. PyTorch: the same architecture (copied below), Adam, cross-entropy on random input, the median step.
It prints a Markdown table for BENCHMARKS.md and writes it, with the raw numbers, to --out.

--cpu-only proves the plumbing on a machine without a GPU: every labpipe run uses the CPU, the parity check
compares two CPU runs with different worker counts (which must agree exactly), and PyTorch runs on the CPU.
"""
import argparse
import glob
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

# --------------------------------------------------------------------------------------------------------------
# PyTorch models: copied from the reference models.py that produced labpipe's summary fixtures (SimpleCNN as in
# the seed's Task 1, ResNet-18 = torchvision's BasicBlock layout with the ImageNet stem, as labpipe's `resnet18`).
# Defined lazily so --help and the labpipe-only parts run without torch.
# --------------------------------------------------------------------------------------------------------------


def torch_models():
    import torch
    import torch.nn as nn

    class SimpleCNN(nn.Module):
        def __init__(self, num_classes=10, dropout=0.5):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, kernel_size=3, padding=1)
            self.bn1 = nn.BatchNorm2d(32)
            self.relu1 = nn.ReLU()
            self.pool1 = nn.MaxPool2d(2)
            self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
            self.bn2 = nn.BatchNorm2d(64)
            self.relu2 = nn.ReLU()
            self.pool2 = nn.MaxPool2d(2)
            self.conv3 = nn.Conv2d(64, 128, kernel_size=3, padding=1)
            self.bn3 = nn.BatchNorm2d(128)
            self.relu3 = nn.ReLU()
            self.pool3 = nn.MaxPool2d(2)
            self.dropout = nn.Dropout(dropout)
            self.fc = nn.Linear(128 * 4 * 4, num_classes)

        def forward(self, x):
            x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
            x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
            x = self.pool3(self.relu3(self.bn3(self.conv3(x))))
            x = self.dropout(x)
            x = x.view(x.size(0), -1)
            return self.fc(x)

    class ResBlock(nn.Module):
        """torchvision BasicBlock (expansion 1)."""

        def __init__(self, in_ch, out_ch, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(out_ch)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(out_ch)
            self.downsample = None
            if stride != 1 or in_ch != out_ch:
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(out_ch),
                )

        def forward(self, x):
            identity = x
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            if self.downsample is not None:
                identity = self.downsample(x)
            out = out + identity
            return self.relu(out)

    class ResNet18(nn.Module):
        def __init__(self, num_classes=10, layers=(2, 2, 2, 2)):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.in_ch = 64
            self.layer1 = self._make_layer(64, layers[0], 1)
            self.layer2 = self._make_layer(128, layers[1], 2)
            self.layer3 = self._make_layer(256, layers[2], 2)
            self.layer4 = self._make_layer(512, layers[3], 2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512, num_classes)

        def _make_layer(self, out_ch, blocks, stride):
            mods = [ResBlock(self.in_ch, out_ch, stride)]
            self.in_ch = out_ch
            for _ in range(1, blocks):
                mods.append(ResBlock(out_ch, out_ch, 1))
            return nn.Sequential(*mods)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer1(x)
            x = self.layer2(x)
            x = self.layer3(x)
            x = self.layer4(x)
            x = self.avgpool(x)
            x = torch.flatten(x, 1)
            return self.fc(x)

    return {"simple_cnn": SimpleCNN, "resnet18": ResNet18}


# Monotonic time by which every labpipe run must have finished (set from --budget).
DEADLINE = float("inf")

# (labpipe arch, label, batch size)
MODELS = [("simple_cnn", "SimpleCNN", 128), ("resnet18", "ResNet-18", 64)]


def log(msg):
    print(f"gpu-check: {msg}", file=sys.stderr, flush=True)


class CheckFailed(Exception):
    """A step failed; the message says which and why."""


def pipeline_yaml(name, arch, batch, train_size, epochs, val_split):
    """A pipeline file for `labpipe run`: synthetic data, no augmentation (the GPU, not the data path, is timed)."""
    return (
        f"name: {name}\n"
        f"description: generated by scripts/cuda/gpu_check.py\n"
        f"data:\n"
        f"  dataset: synthetic\n"
        f"  train_size: {train_size}\n"
        f"  test_size: 256\n"
        f"  val_split: {val_split}\n"
        f"  normalize: train_mean_std\n"
        f"model:\n"
        f"  arch: {arch}\n"
        f"  num_classes: 10\n"
        f"train:\n"
        f"  epochs: {epochs}\n"
        f"  batch_size: {batch}\n"
        f"  optimizer: {{name: adam, lr: 0.001}}\n"
        f"  select: last\n"
        f"  seed: 0\n"
    )


# Environment of every labpipe run: LABPIPE_CUDA_KERNELS is set per pass (see --kernel-modes).
LABPIPE_ENV = dict(os.environ)


def run_labpipe(binary, work, tag, yaml_text, device, timeout, workers=None):
    """Run one pipeline on `device` in its own output folder; return the epochs of its history.json."""
    os.makedirs(work, exist_ok=True)
    pipe = os.path.join(work, f"{tag}.yaml")
    out = os.path.join(work, f"out-{tag}")
    with open(pipe, "w") as fh:
        fh.write(yaml_text)
    cmd = [binary, "run", pipe, "--out", out, "--device", device, "--quiet"]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    timeout = min(timeout, DEADLINE - time.monotonic())
    if timeout < 10:
        raise CheckFailed(f"{tag}: skipped, the check's time budget (--budget) is spent")
    log(f"{tag}: {' '.join(cmd[1:])}")
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=LABPIPE_ENV)
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"{tag}: labpipe did not finish within {timeout:.0f} s ({' '.join(cmd)})")
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        # Backtrace frames (RUST_BACKTRACE=1) would push the message itself out of view.
        said = [ln for ln in p.stderr.splitlines() if not re.match(r"\s+(\d+: |at )", ln)]
        raise CheckFailed(
            f"{tag}: labpipe exited with {p.returncode} ({' '.join(cmd)})\n--- stderr ---\n" + "\n".join(said[-40:])
        )
    hist = glob.glob(os.path.join(out, "cache", "train", "*", "history.json"))
    if len(hist) != 1:
        raise CheckFailed(f"{tag}: expected one {out}/cache/train/*/history.json, found {len(hist)}")
    with open(hist[0]) as fh:
        epochs = json.load(fh)["epochs"]
    if not epochs:
        raise CheckFailed(f"{tag}: {hist[0]} has no epochs")
    for e in epochs:
        log(
            f"{tag}: epoch {e['epoch']} train_loss {e['train_loss']:.6f} "
            f"{e['images_per_second']:.1f} img/s ({e['seconds']:.2f} s)"
        )
    return {"epochs": epochs, "wall_s": wall, "stderr": p.stderr.strip().splitlines()[-3:]}


def run_bench(binary, arch, batch, device, steps, timeout):
    """`labpipe bench` on `device`: median training-step and evaluation images/s (no data path)."""
    cmd = [binary, "bench", "--model", arch, "--batch", str(batch), "--steps", str(steps), "--device", device, "--json"]
    timeout = min(timeout, DEADLINE - time.monotonic())
    if timeout < 10:
        raise CheckFailed(f"bench {arch}: skipped, the check's time budget (--budget) is spent")
    log(f"bench {arch}: {' '.join(cmd[1:])}")
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=LABPIPE_ENV)
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"bench {arch}: labpipe bench did not finish within {timeout:.0f} s")
    if p.returncode != 0:
        raise CheckFailed(f"bench {arch}: labpipe bench exited with {p.returncode}\n{p.stderr[-3000:]}")
    j = json.loads(p.stdout)
    r = {"train": j["train"]["median_img_per_s"], "eval": j["eval"]["median_img_per_s"], "device": j["device"]}
    log(f"bench {arch}: train {r['train']:.1f} img/s, eval {r['eval']:.1f} img/s on {r['device']}")
    return r


def torch_bench(arch, batch, device, warmup, steps, epoch_images):
    """PyTorch on `device`: median training-step images/s (Adam, cross-entropy, random float32 input), median
    evaluation images/s at batch 256, and the time of one epoch of `epoch_images` shuffled images held on the
    device (PyTorch's best case: no data loader)."""
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    model = torch_models()[arch]().to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = []
    for i in range(warmup + steps):
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = crit(model(x), y)
        loss.backward()
        opt.step()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    train = batch / statistics.median(times)
    # One epoch as labpipe runs it: shuffled batches of a dataset already in memory.
    data = torch.rand(epoch_images, 3, 32, 32, generator=g).to(device)
    labels = torch.randint(0, 10, (epoch_images,), generator=g).to(device)
    sync()
    t0 = time.perf_counter()
    order = torch.randperm(epoch_images, device=device)
    for s in range(0, epoch_images, batch):
        idx = order[s : s + batch]
        opt.zero_grad(set_to_none=True)
        loss = crit(model(data[idx]), labels[idx])
        loss.backward()
        opt.step()
        loss.item()  # labpipe reads every batch's loss back
    sync()
    epoch_s = time.perf_counter() - t0
    model.eval()
    xe = torch.rand(256, 3, 32, 32, generator=g).to(device)
    ye = torch.randint(0, 10, (256,), generator=g).to(device)
    etimes = []
    with torch.no_grad():
        for i in range(warmup + steps):
            sync()
            t0 = time.perf_counter()
            out = model(xe)
            crit(out, ye).item()
            (out.argmax(1) == ye).sum().item()
            sync()
            if i >= warmup:
                etimes.append(time.perf_counter() - t0)
    return {"train": train, "eval": 256 / statistics.median(etimes), "epoch_s": epoch_s}


def close(a, b, rtol, atol):
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the labpipe binary")
    ap.add_argument("--work", required=True, help="scratch folder for pipelines and labpipe outputs")
    ap.add_argument("--out", required=True, help="folder for gpu_check.md and gpu_check.json")
    ap.add_argument("--cpu-only", action="store_true", help="no GPU: prove the plumbing on the CPU")
    ap.add_argument("--card", default="", help="GPU name (from nvidia-smi)")
    ap.add_argument("--train-size", type=int, default=10000, help="images of the throughput runs")
    ap.add_argument("--throughput-epochs", type=int, default=2, help="epochs of the throughput runs")
    ap.add_argument("--parity-size", type=int, default=1024, help="images of the CPU/CUDA parity runs")
    ap.add_argument("--rtol", type=float, default=2e-3, help="relative tolerance of the loss parity")
    ap.add_argument("--timeout", type=int, default=180, help="seconds allowed per labpipe run")
    ap.add_argument("--budget", type=int, default=480, help="seconds allowed for all labpipe runs together")
    ap.add_argument("--torch-steps", type=int, default=30)
    ap.add_argument(
        "--kernel-modes", default="0,1",
        help="LABPIPE_CUDA_KERNELS values to check: 0 = Candle's ops, 1 = labpipe's CUDA kernels (default both)",
    )
    a = ap.parse_args()
    global DEADLINE
    DEADLINE = time.monotonic() + a.budget

    fast = "cpu" if a.cpu_only else "cuda"
    failures, rows, raw = [], [], {"card": a.card, "cpu_only": a.cpu_only, "models": {}}
    raw["host"] = {"python": platform.python_version(), "nproc": os.cpu_count()}
    try:
        import torch

        torch_ok = True
        raw["host"]["torch"] = torch.__version__
        if fast == "cuda":
            if not torch.cuda.is_available():
                log("torch is installed but sees no CUDA device: the PyTorch column is skipped")
                torch_ok = False
            else:
                # Strict float32, as labpipe (Candle does not use TF32 unless asked); PyTorch allows it for convs.
                torch.backends.cudnn.allow_tf32 = False
                torch.backends.cuda.matmul.allow_tf32 = False
                torch.backends.cudnn.benchmark = True
        else:
            torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:
        log("torch is not importable: the PyTorch column is skipped")
        torch_ok = False

    modes = [m.strip() for m in a.kernel_modes.split(",") if m.strip()]
    torch_done = {}
    for (arch, label, batch), mode in [(m, k) for m in MODELS for k in modes]:
        LABPIPE_ENV["LABPIPE_CUDA_KERNELS"] = mode
        label = f"{label} (kernels={mode})" if len(modes) > 1 else label
        log(f"== {label}: LABPIPE_CUDA_KERNELS={mode}")
        r = raw["models"][f"{arch}/kernels={mode}"] = {"batch": batch, "kernels": mode}
        val = max(1, min(256, a.parity_size // 8))
        last = None
        # Each step is independent: a failure is recorded and the other figures are still measured.
        try:
            # 1. Throughput on the fast device; the last epoch is reported (the first pays for kernel loading).
            thr = run_labpipe(
                a.bin, a.work, f"{arch}-{fast}-k{mode}-throughput",
                pipeline_yaml(f"bench-{arch}", arch, batch, a.train_size, a.throughput_epochs, val),
                fast, a.timeout,
            )
            r["labpipe_fast"] = thr
            last = thr["epochs"][-1]
        except CheckFailed as e:
            failures.append(str(e))
            log(f"FAILED: {e}")
        try:
            # 2. Parity: the same small pipeline on the CPU and on the fast device (or twice on the CPU with
            #    different worker counts in --cpu-only mode, where the numbers must agree exactly).
            small = pipeline_yaml(f"parity-{arch}", arch, batch, a.parity_size, 1, val)
            cpu = run_labpipe(a.bin, a.work, f"{arch}-cpu-k{mode}-parity", small, "cpu", a.timeout)
            other_tag = f"{arch}-cpu-k{mode}-parity-workers1" if a.cpu_only else f"{arch}-{fast}-k{mode}-parity"
            other = run_labpipe(a.bin, a.work, other_tag, small, fast, a.timeout, workers=1 if a.cpu_only else None)
            lc, lf = cpu["epochs"][0]["train_loss"], other["epochs"][0]["train_loss"]
            rtol, atol = (0.0, 0.0) if a.cpu_only else (a.rtol, 1e-5)
            ok = close(lc, lf, rtol, atol)
            r["parity"] = {"cpu_train_loss": lc, f"{fast}_train_loss": lf, "rtol": rtol, "ok": ok}
            r["labpipe_cpu_img_s"] = cpu["epochs"][0]["images_per_second"]
            log(
                f"{label}: first-epoch train loss cpu {lc:.7f} vs {fast}{' (workers=1)' if a.cpu_only else ''} "
                f"{lf:.7f}: {'ok' if ok else 'MISMATCH'} (rtol {rtol})"
            )
            if not ok:
                failures.append(f"{label}: train loss cpu {lc} vs {fast} {lf} differ beyond rtol {rtol}")
        except CheckFailed as e:
            failures.append(str(e))
            log(f"FAILED: {e}")
        try:
            # 3. Step throughput without the data path, measured as PyTorch's is.
            r["labpipe_bench"] = run_bench(a.bin, arch, batch, fast, a.torch_steps, a.timeout)
        except (CheckFailed, ValueError, KeyError) as e:
            failures.append(f"{label}: {e}")
            log(f"FAILED: {e}")
        tb = torch_done.get(arch)
        if torch_ok and arch not in torch_done:
            try:
                tb = torch_bench(arch, batch, fast, 5, a.torch_steps, a.train_size - val)
                log(f"{label}: PyTorch {fast} train {tb['train']:.1f} img/s, eval {tb['eval']:.1f} img/s, "
                    f"epoch {tb['epoch_s']:.2f} s")
                torch_done[arch] = tb
            except Exception as e:  # a torch failure must not hide labpipe's numbers
                failures.append(f"{label}: PyTorch benchmark failed: {e!r}")
        r["torch"] = tb
        rows.append((label, batch, last, r.get("labpipe_bench"), tb, r.get("labpipe_cpu_img_s"),
                     r.get("parity", {}).get("ok")))

    card = a.card or ("CPU only" if a.cpu_only else "unknown GPU")
    fmt = lambda v: "n/a" if v is None else f"{v:,.0f}"  # noqa: E731
    sec = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    ratio = lambda x, y: "n/a" if x is None or not y else f"{x / y:.2f}"  # noqa: E731
    lines = [
        f"On {card} ({'labpipe --device cpu' if a.cpu_only else 'labpipe --device cuda'}; synthetic data, no "
        f"augmentation, Adam, strict float32). Epoch: labpipe's last of {a.throughput_epochs} epochs of "
        f"`labpipe run` ({a.train_size} images less {val} for validation; data path included) against PyTorch "
        f"looping over the same number of shuffled images already on the device. Step and eval: median of "
        f"{a.torch_steps} steps, `labpipe bench` against PyTorch; eval at batch 256. Ratios > 1 favour labpipe.",
        "",
        "| card | model | batch | epoch s labpipe | epoch s PyTorch | speed ratio | train img/s labpipe "
        "| train img/s PyTorch | ratio | eval img/s labpipe | eval img/s PyTorch | ratio | labpipe CPU img/s "
        "| loss parity |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for label, batch, last, lb, tb, lcpu, par in rows:
        le = last["seconds"] if last else None
        te = tb["epoch_s"] if tb else None
        lt, le_ = (lb["train"], lb["eval"]) if lb else (None, None)
        tt, tev = (tb["train"], tb["eval"]) if tb else (None, None)
        parity = "n/a" if par is None else ("ok" if par else "MISMATCH")
        lines.append(
            f"| {card} | {label} | {batch} | {sec(le)} | {sec(te)} | {ratio(te, le)} | {fmt(lt)} | {fmt(tt)} "
            f"| {ratio(lt, tt)} | {fmt(le_)} | {fmt(tev)} | {ratio(le_, tev)} | {fmt(lcpu)} | {parity} |"
        )
    table = "\n".join(lines) + "\n"
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "gpu_check.md"), "w") as fh:
        fh.write(table)
    raw["failures"] = failures
    with open(os.path.join(a.out, "gpu_check.json"), "w") as fh:
        json.dump(raw, fh, indent=2)
    print(table)
    if failures:
        log(f"{len(failures)} failure(s):")
        for f in failures:
            log(f"  - {f}")
        return 1
    log("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
