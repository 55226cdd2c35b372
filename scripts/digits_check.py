#!/usr/bin/env python3
"""Real handwritten digits in MNIST's layouts, and PyTorch's accuracy on them with the recipe of pipelines/mnist.yaml.

Source: scikit-learn's bundled `load_digits` (1 797 real handwritten digits, 8×8, 17 grey levels, UCI ML
hand-written digits). Each is scaled to 0..255, resized to 20×20 (PIL bilinear) and centred in a 28×28 frame, as
MNIST's digits are. The first 1 500 are the training set, the other 297 the test set. Writes, under OUT:
  OUT/idx/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz   MNIST's IDX layout (`dataset: mnist, root: OUT/idx`)
  OUT/folder/{train,test}/<digit>/<n>.png                   an ImageFolder of 28×28 greyscale PNGs
then trains LeNet-5 (as pipelines/mnist.yaml declares it) with Adam 1e-3, batch 64, 10 epochs on a random 90 % of
the training set (labpipe: `val_split: 0.1`) and prints its test accuracy. Needs torch, numpy, pillow, scikit-learn (not labpipe's deps).
Usage: scripts/digits_check.py OUT [--seed N]   (then, e.g.:
  labpipe run pipelines/mnist.yaml -S data.root=OUT/idx -S data.normalize=none -S data.val_split=0.1
  labpipe run pipelines/mnist.yaml -S data.dataset=image_folder -S data.root=OUT/folder -S data.channels=1 ...)
"""
import argparse, gzip, os, struct
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def frames():
    d = load_digits()
    out = []
    for img in d.images:
        a = (img / 16.0 * 255.0).round().astype(np.uint8)
        small = Image.fromarray(a, mode="L").resize((20, 20), Image.BILINEAR)
        frame = Image.new("L", (28, 28), 0)
        frame.paste(small, (4, 4))
        out.append(np.asarray(frame))
    return np.stack(out), d.target.astype(np.uint8)


def write_idx(path, arr, magic):
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(struct.pack(">I", magic))
        for n in arr.shape:
            f.write(struct.pack(">I", n))
        f.write(arr.tobytes())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    x, y = frames()
    tr, te = slice(0, 1500), slice(1500, None)
    idx = os.path.join(a.out, "idx")
    os.makedirs(idx, exist_ok=True)
    write_idx(os.path.join(idx, "train-images-idx3-ubyte.gz"), x[tr], 0x803)
    write_idx(os.path.join(idx, "train-labels-idx1-ubyte.gz"), y[tr], 0x801)
    write_idx(os.path.join(idx, "t10k-images-idx3-ubyte.gz"), x[te], 0x803)
    write_idx(os.path.join(idx, "t10k-labels-idx1-ubyte.gz"), y[te], 0x801)
    for split, sl in (("train", tr), ("test", te)):
        for i, (img, lab) in enumerate(zip(x[sl], y[sl])):
            d = os.path.join(a.out, "folder", split, str(lab))
            os.makedirs(d, exist_ok=True)
            Image.fromarray(img, mode="L").save(os.path.join(d, f"{i:05d}.png"))

    import torch, torch.nn as nn
    torch.manual_seed(a.seed)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    xt = torch.tensor(x[tr], dtype=torch.float32).unsqueeze(1) / 255.0
    yt = torch.tensor(y[tr], dtype=torch.long)
    perm = torch.randperm(len(yt))
    keep = perm[len(yt) // 10:]
    xt, yt = xt[keep], yt[keep]
    xs = torch.tensor(x[te], dtype=torch.float32).unsqueeze(1) / 255.0
    ys = torch.tensor(y[te], dtype=torch.long)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for epoch in range(10):
        net.train()
        p = torch.randperm(len(yt))
        for i in range(0, len(yt), 64):
            b = p[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[b]), yt[b]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(xs).argmax(1) == ys).float().mean().item()
    print(f"pytorch test accuracy: {acc:.4f} ({len(ys)} test images, seed {a.seed})")


if __name__ == "__main__":
    main()
