"""Training throughput: `edgeskin train`'s epoch against a plain timm + torch loop, side by side.

    python benchmarks/train_throughput.py [--data ../shared/data/HAM10000] [--images 1536] [--rounds 3]

Both train the same network (`edgeskin_cnn_m` from timm's registry) on the same HAM10000 images
at the `ham-edge-robust` recipe's input size, batch size, augmentation (torchvision v2: the same
`train_transform`), optimizer, loader workers and torch threads. edgeskin's side is its own
training step: `make_loader` (images decoded once into memory, class-balanced sampler) and
`train_epoch` (balanced-softmax loss). The plain loop is what a user writes first: a Dataset
that opens each JPEG with PIL every epoch, resizes it, and a CrossEntropy step. Steps:
1. decode the images for edgeskin (timed apart: it happens once per run, not per epoch);
2. one untimed warm-up round, then `--rounds` rounds, each one epoch of edgeskin then one of the
   plain loop, so a change in the machine's speed falls on both; images/s is the median over
   rounds and the ratio the median of the rounds' own ratios;
3. benchmarks/results/train_throughput.json (and .md beside it).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import edgeskin._compat  # noqa: F401  (before torchvision/timm: CPU torch lacks two op schemas)
import numpy as np
import timm
import torch
from PIL import Image

from edgeskin.data.bundle import load_labelled
from edgeskin.data.records import get_task
from edgeskin.data.transforms import channel_stats, get_augment, normalize, train_transform
from edgeskin.fileio import write_json, write_text
from edgeskin.models.factory import build_model
from edgeskin.recipes import recipe_config
from edgeskin.train.engine import lr_at, make_loader, make_loss, make_scaler, seed_everything, train_epoch
from edge_runtime.preprocess import to_rgb

HERE = Path(__file__).resolve().parent
OUT = HERE / "results"


class FilesDataset(torch.utils.data.Dataset):
    """The plain loop's data: decode, convert and resize every image on every epoch."""

    def __init__(self, paths, targets, size_hw, transform):
        self.paths, self.targets, self.size, self.transform = paths, targets, size_hw, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as img:
            rgb = to_rgb(img).resize((self.size[1], self.size[0]), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)
        return self.transform(x), int(self.targets[i])


def edgeskin_epoch(cfg, data, mean, std) -> float:
    """Seconds for one epoch of edgeskin's own training step on `data`."""
    seed_everything(cfg.seed)
    n = len(data.task.labels)
    model = build_model(cfg.backbone, n, cfg.head, cfg.input_size, cfg.drop_rate).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loader = make_loader(cfg, data.pixels, data.targets, n, epoch=0)
    loss_fn = make_loss(cfg, data.targets, n, torch.device("cpu"))
    steps = len(loader)
    start = time.perf_counter()
    train_epoch(model, loader, opt, loss_fn, make_scaler(torch.device("cpu")), lambda i: lr_at(i, steps, 0, cfg.lr),
                mean, std, torch.device("cpu"), "edgeskin")
    return time.perf_counter() - start


def plain_epoch(cfg, paths, targets, n_classes, mean, std) -> float:
    """Seconds for one epoch of the plain timm + torch loop over the same images."""
    torch.manual_seed(cfg.seed)
    model = timm.create_model(cfg.backbone, num_classes=n_classes, drop_rate=cfg.drop_rate).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ds = FilesDataset(paths, targets, cfg.input_size, train_transform(get_augment(cfg.augment), cfg.input_size))
    loader = torch.utils.data.DataLoader(ds, cfg.batch_size, shuffle=True, drop_last=True, num_workers=cfg.workers)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    start = time.perf_counter()
    for x, y in loader:
        loss = loss_fn(model(normalize(x, mean, std)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "HAM10000"))
    p.add_argument("--images", type=int, default=1536)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    if not Path(args.data).is_dir():
        p.error(f"--data {args.data} not found; pass the HAM10000 folder")
    cfg = recipe_config("ham-edge-robust", {"data": args.data, "device": "cpu", "color_constancy": "none"})
    # 1. edgeskin decodes once; the plain loop reads the same files every epoch.
    start = time.perf_counter()
    data = load_labelled(cfg.data, get_task(cfg.task), cfg.input_size, max_images=args.images, seed=0)
    decode_s = time.perf_counter() - start
    mean, std = (torch.tensor(v, dtype=torch.float32) for v in channel_stats(data.pixels))
    paths = [s.path for s in data.samples]
    # 2. Alternating rounds.
    edgeskin_epoch(cfg, data, mean, std), plain_epoch(cfg, paths, data.targets, len(data.task.labels), mean, std)
    ours, plain = [], []
    for r in range(args.rounds):
        ours.append(edgeskin_epoch(cfg, data, mean, std))
        plain.append(plain_epoch(cfg, paths, data.targets, len(data.task.labels), mean, std))
        print(f"round {r + 1}: edgeskin {ours[-1]:.1f} s, plain loop {plain[-1]:.1f} s", file=sys.stderr)
    seen = (len(paths) // cfg.batch_size) * cfg.batch_size  # both drop the last partial batch
    ours_ips, plain_ips = seen / float(np.median(ours)), seen / float(np.median(plain))
    report = {
        "date": datetime.date.today().isoformat(),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
                 "torch_threads": torch.get_num_threads()},
        "model": cfg.backbone, "input_size": list(cfg.input_size), "batch_size": cfg.batch_size,
        "augment": cfg.augment, "workers": cfg.workers, "images": len(paths), "images_per_epoch": seen,
        "rounds": args.rounds, "edgeskin_epoch_s": [round(t, 2) for t in ours],
        "plain_loop_epoch_s": [round(t, 2) for t in plain],
        "edgeskin_images_per_s": round(ours_ips, 1), "plain_loop_images_per_s": round(plain_ips, 1),
        "ratio": round(float(np.median(np.array(plain) / np.array(ours))), 3), "edgeskin_decode_once_s": round(decode_s, 1),
        "note": "colour constancy off on both sides (the plain loop has none); edgeskin decodes once per run "
                "(edgeskin_decode_once_s), the plain loop every epoch",
    }
    write_json(args.out / "train_throughput.json", report)
    write_text(args.out / "train_throughput.md", render(report))
    print(render(report))
    return 0


def render(r: dict) -> str:
    return "\n".join([
        "# Training throughput", "",
        f"{r['date']}, {r['host']['machine']}, {r['host']['cpus']} CPUs, torch {r['host']['torch']} "
        f"({r['host']['torch_threads']} threads), loader workers {r['workers']}. `{r['model']}` at "
        f"{r['input_size'][0]}x{r['input_size'][1]}, batch {r['batch_size']}, `{r['augment']}` augmentation, "
        f"{r['images']} HAM10000 images; median of {r['rounds']} alternating rounds after one warm-up.", "",
        "| loop | images/s | epoch seconds per round |", "|---|---|---|",
        f"| `edgeskin train` (its loader and step) | {r['edgeskin_images_per_s']} | "
        f"{', '.join(map(str, r['edgeskin_epoch_s']))} |",
        f"| plain timm + torch loop | {r['plain_loop_images_per_s']} | {', '.join(map(str, r['plain_loop_epoch_s']))} |",
        "", f"Ratio (the median of each round's plain-loop time over edgeskin's) **{r['ratio']}x**. edgeskin decoded the images once in {r['edgeskin_decode_once_s']} s "
        "(once per run, not per epoch). " + r["note"] + ".", ""])


if __name__ == "__main__":
    sys.exit(main())
