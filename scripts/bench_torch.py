"""PyTorch CPU reference throughput for labpipe (2 threads).

Copied from the project's PyTorch reference material (refs/bench_torch.py). Changes, so that scripts/bench.sh
can interleave it with `labpipe bench` and compare like with like: models come from torch_models.py (the
reference models.py's classes); inputs are N(0,1) (torch.randn, as `labpipe bench`) instead of U(0,1);
`--only` runs a subset of sections in order; `--max-wait` bounds the wait for a quiet machine; `--threads`;
each section records the process's peak RSS after it ran (ru_maxrss and VmHWM) and the load average.

Usage: python bench_torch.py  (needs torch, torchvision) [--out torch_cpu_bench.json] [--steps 20]
       [--only simplecnn_train_b128,resnet18_train_b64,...] [--max-wait 600] [--threads 2]

train: model.train(), Adam(lr=1e-3), CrossEntropyLoss, random float32 N x 3 x 32 x 32 input + random labels;
       5 warm-up steps, then >= 20 timed steps; a step = zero_grad + forward + loss + backward + optimizer.step.
       Reported: median over steps of batch/step_time (images/s); also mean and min/max.
eval : model.eval(), torch.no_grad(), batch 256, 3 warm-up + 20 timed forwards, median images/s.
aug  : torchvision RandomCrop(32, padding=4), RandomHorizontalFlip, RandomRotation(15), ToTensor,
       Normalize(CIFAR mean/std) on one 32x32 uint8 RGB PIL image at a time, torch.set_num_threads(1);
       'aug_pil' starts from a PIL image; 'aug_from_uint8' includes Image.fromarray (what
       torchvision.datasets.CIFAR10.__getitem__ does). 3 passes of 2000 images, median images/s.
Before starting it waits (up to 10 min) until other processes use < 10% of the machine, and it records per
section 'foreign_cpu_share' = CPU used by other processes / (wall * cores); > ~0.05 means the number is disturbed.
"""
import argparse, json, os, platform, resource, statistics, sys, time

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import SimpleCNN, ResNet18  # noqa: E402


def _busy_jiffies():
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:]]
    return sum(v) - v[3] - v[4]  # all minus idle, iowait


class ForeignCpu:
    """Measures how much CPU *other* processes used while a section ran (fraction of all cores)."""

    def __enter__(self):
        self.t, self.b, self.c = time.perf_counter(), _busy_jiffies(), time.process_time()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t
        busy = (_busy_jiffies() - self.b) / os.sysconf("SC_CLK_TCK")
        own = time.process_time() - self.c
        self.share = max(0.0, busy - own) / (wall * (os.cpu_count() or 1))


def peak_rss():
    """The process's peak resident memory so far, in bytes: ru_maxrss (KiB on Linux) and VmHWM."""
    out = {"ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                out["vmhwm_bytes"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def load_average():
    try:
        return [float(v) for v in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


def wait_quiet(max_wait=600, thresh=0.10):
    """Wait until other processes use < thresh of the machine over a 3 s window (max_wait s)."""
    t0 = time.perf_counter()
    while True:
        with ForeignCpu() as f:
            time.sleep(3)
        if f.share < thresh or time.perf_counter() - t0 > max_wait:
            return f.share, time.perf_counter() - t0


def summarize(times, batch):
    ips = [batch / t for t in times]
    return {"batch": batch, "steps": len(times), "median_img_per_s": statistics.median(ips),
            "mean_img_per_s": statistics.mean(ips), "min_img_per_s": min(ips), "max_img_per_s": max(ips),
            "median_step_s": statistics.median(times)}


def bench_train(model, batch, warmup=5, steps=20):
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = crit(model(x), y)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
    return summarize(times, batch)


def bench_eval(model, batch=256, warmup=3, steps=20):
    model.eval()
    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    times = []
    with torch.no_grad():
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            model(x)
            dt = time.perf_counter() - t0
            if i >= warmup:
                times.append(dt)
    return summarize(times, batch)


def bench_aug(n=2000, passes=3):
    torch.set_num_threads(1)
    tf = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.RandomRotation(15),
        transforms.ToTensor(),
        transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    ])
    rng = np.random.default_rng(0)
    arrs = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    pils = [Image.fromarray(a) for a in arrs]
    for im in pils[:200]:  # warm-up
        tf(im)
    res = {}
    for name, fn in (("aug_pil", lambda i: tf(pils[i])), ("aug_from_uint8", lambda i: tf(Image.fromarray(arrs[i])))):
        rates = []
        for _ in range(passes):
            t0 = time.perf_counter()
            for i in range(n):
                fn(i)
            rates.append(n / (time.perf_counter() - t0))
        res[name] = {"images": n, "passes": passes, "median_img_per_s": statistics.median(rates),
                     "per_image_us": 1e6 / statistics.median(rates), "all_passes_img_per_s": rates}
    return res


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="torch_cpu_bench.json")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--only", default="", help="comma-separated sections to run, in the listed order (default: all)")
    ap.add_argument("--max-wait", type=float, default=600, help="seconds to wait for a quiet machine (0: none)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    res = {"env": {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_model(),
                   "nproc": os.cpu_count(), "python": platform.python_version(),
                   "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "load_before": load_average()}}
    share, waited = wait_quiet(max_wait=a.max_wait) if a.max_wait > 0 else (None, 0.0)
    res["env"]["quiet_wait_s"] = round(waited, 1)
    res["env"]["foreign_cpu_before_start"] = None if share is None else round(share, 3)
    sections = (("simplecnn_train_b128", lambda: bench_train(SimpleCNN(), 128, steps=a.steps)),
                ("resnet18_train_b64", lambda: bench_train(ResNet18(), 64, steps=a.steps)),
                ("simplecnn_eval_b256", lambda: bench_eval(SimpleCNN(), 256, steps=a.steps)),
                ("resnet18_eval_b256", lambda: bench_eval(ResNet18(), 256, steps=a.steps)),
                ("aug", bench_aug))
    only = [k for k in a.only.split(",") if k]
    unknown = set(only) - {k for k, _ in sections}
    if unknown:
        sys.exit(f"--only: unknown section(s) {sorted(unknown)}; known: {[k for k, _ in sections]}")
    if only:
        sections = tuple(sorted((s for s in sections if s[0] in only), key=lambda s: only.index(s[0])))
    for key, fn in sections:
        with ForeignCpu() as f:
            r = fn()
        if key == "aug":
            for v in r.values():
                v["foreign_cpu_share"] = round(f.share, 3)
            res.update(r)
        else:
            r["foreign_cpu_share"] = round(f.share, 3)
            r.update(peak_rss())  # cumulative: the process's peak up to the end of this section
            res[key] = r
    res["env"]["load_after"] = load_average()
    print(f"torch {torch.__version__}  threads={res['env']['threads']}  cpu={res['env']['cpu']}")
    print(f"{'benchmark':24s} {'median img/s':>12s} {'mean':>9s} {'min':>9s} {'max':>9s} {'foreignCPU':>10s} {'peakRSS MiB':>11s}")
    for k in ("simplecnn_train_b128", "resnet18_train_b64", "simplecnn_eval_b256", "resnet18_eval_b256"):
        if k not in res:
            continue
        r = res[k]
        print(f"{k:24s} {r['median_img_per_s']:12.1f} {r['mean_img_per_s']:9.1f} {r['min_img_per_s']:9.1f} {r['max_img_per_s']:9.1f} {r['foreign_cpu_share']:10.2f} {r['ru_maxrss_bytes'] / 2**20:11.0f}")
    for k in ("aug_pil", "aug_from_uint8"):
        if k not in res:
            continue
        r = res[k]
        print(f"{k + ' (1 thread)':24s} {r['median_img_per_s']:12.1f}  ({r['per_image_us']:.1f} us/img)  foreignCPU {r['foreign_cpu_share']:.2f}")
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=2)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
