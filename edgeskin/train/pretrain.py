"""Self-supervised pre-training on the training images themselves: SimCLR (Chen et al. 2020).

For clinics that cannot use ImageNet weights: the backbone first learns to tell two augmented
views of the same lesion photo from views of the others, with no labels, then `edgeskin train
--weights FILE --weights-sha256 HEX` starts from it. The NT-Xent loss and the projection head are
lightly's (github.com/lightly-ai/lightly); the views are edgeskin's own augmentations, stronger.

Only the train side of the split is read, so the validation and test images stay unseen. The
weights file lists the images it was pre-trained on, and `edgeskin train` refuses to validate or
test on any of them (`check_unseen`): a different --seed gives a different split, so pass the
`--split-manifest` this command writes.

SimCLR wants hundreds of epochs, longer than one sitting (or one GPU lease): every epoch ends in
an atomic `last.pt` with the optimizer and the random generators, so `--resume RUN` continues a
killed run exactly, and `--max-minutes` fits the schedule to a time budget, as in `edgeskin train`.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from edgeskin.config import PretrainConfig, TrainConfig
from edgeskin.progress import progress
from edgeskin.data.split import MANIFEST_FILE, write_manifest
from edgeskin.data.transforms import Augment, channel_stats, normalize, train_transform
from edgeskin.errors import EdgeskinError
from edgeskin.metrics import quick_metrics
from edgeskin.extras import require
from edgeskin.fileio import sha256_file, write_json
from edgeskin.models import build_model
from edgeskin.predict import amp_dtype, describe_device, predict_logits, resolve_device
from edgeskin.train import checkpoint as ckpt
from edgeskin.train.prepare import prepare_data
from edgeskin.train.engine import epoch_seed, lr_at, make_scaler, replan, seed_everything
from torchvision.transforms import v2  # after edgeskin.data.transforms, which loads the CPU-torch compat

WEIGHTS_FILE = "backbone.pt"
META_KEY = "edgeskin_pretrain"  # beside "state_dict" in the weights file; models.load_weights reads the latter
JITTER = 0.4  # SimCLR's colour distortion is what keeps it from matching views by colour histogram alone


@dataclass(frozen=True)
class PretrainResult:
    run_dir: Path
    weights: Path
    sha256: str
    loss_history: tuple[float, ...]
    knn_before: float  # validation balanced accuracy of a k-NN on the features, at random init...
    knn_after: float  # ...and after pre-training (labels used for this report only)


def view_transform(cfg: PretrainConfig) -> v2.Compose:
    """One random view: crop, flips, rotation and colour jitter as in training but stronger, plus
    SimCLR's random greyscale and blur (kernel about a tenth of the image)."""
    kernel = max(3, min(cfg.input_size) // 10 | 1)
    return v2.Compose([train_transform(Augment(crop_scale=cfg.crop_scale, jitter=JITTER), cfg.input_size),
                       v2.RandomGrayscale(0.2),
                       v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5)])


class TwoViews(torch.utils.data.Dataset):
    def __init__(self, pixels: np.ndarray, transform):
        self.pixels, self.transform = pixels, transform

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int):
        x = torch.from_numpy(self.pixels[i]).permute(2, 0, 1)
        return self.transform(x), self.transform(x)


class Pooled(torch.nn.Module):
    """The classifier's backbone, globally pooled: what the head sees, as one vector per image."""

    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x).mean((2, 3))


class SimCLRNet(torch.nn.Module):
    """The pooled backbone, then lightly's 2-layer projection head."""

    def __init__(self, backbone: torch.nn.Module, channels: int):
        super().__init__()
        from lightly.models.modules import SimCLRProjectionHead

        self.pooled = Pooled(backbone)
        self.projection = SimCLRProjectionHead(channels, 2 * channels, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.pooled(x))


def knn_balanced_accuracy(backbone, train_px, train_y, val_px, val_y, mean, std, device, k: int = 20) -> float:
    """Balanced accuracy of a cosine k-NN vote on pooled features: how much class information the
    features carry without any fitting (the usual SSL monitor, e.g. lightly's KNNClassifier)."""
    from sklearn.neighbors import KNeighborsClassifier

    pooled, was = Pooled(backbone), backbone.training
    knn = KNeighborsClassifier(min(k, len(train_y)), metric="cosine")
    knn.fit(predict_logits(pooled, train_px, mean, std, device), train_y)
    probs = np.zeros((len(val_y), int(max(train_y.max(), val_y.max())) + 1))
    probs[:, knn.classes_] = knn.predict_proba(predict_logits(pooled, val_px, mean, std, device))
    backbone.train(was)
    return float(quick_metrics(val_y, probs)["balanced_accuracy"])


def pretrain(cfg: PretrainConfig | None = None, resume: str | Path | None = None) -> PretrainResult:
    """Pre-train from `cfg`, or continue the killed run in folder `resume` with the config saved in
    it: the epochs it finishes are the ones the uninterrupted run would have run."""
    require("edgeskin pretrain", "pretrain")  # lightly is an extra, since it brings pytorch_lightning along
    from lightly.loss import NTXentLoss

    if (cfg is None) == (resume is None):
        raise EdgeskinError("pass either a pre-training config or a run folder to resume, not both")
    if resume is not None:
        run_dir = Path(resume)
        cfg = dataclasses.replace(PretrainConfig.load(run_dir / ckpt.CONFIG),
                                  split_manifest=str(run_dir / MANIFEST_FILE))
        state = ckpt.load_state(run_dir)
    device = resolve_device(cfg.device)
    # Step 1: the same images and split `edgeskin train` would use with these fields.
    data, split = prepare_data(TrainConfig(
        data=cfg.data, task=cfg.task, input_size=cfg.input_size, color_constancy=cfg.color_constancy,
        label_map=cfg.label_map, holdout_source=cfg.holdout_source, seed=cfg.seed, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
        split_manifest=cfg.split_manifest, max_images=cfg.max_images))
    train_idx, val_idx = split.indices("train"), split.indices("val")
    if len(train_idx) < cfg.batch_size:
        raise EdgeskinError(f"--batch-size {cfg.batch_size} is larger than the {len(train_idx)} training images; "
                            "lower it or add images")
    mean, std = channel_stats(data.pixels[train_idx])
    # Step 2: the backbone exactly as `edgeskin train` builds it, so every key of the file loads.
    seed_everything(cfg.seed)
    backbone = build_model(cfg.backbone, len(data.task.labels), input_size=cfg.input_size).backbone
    net = SimCLRNet(backbone, backbone.num_features).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = make_scaler(device)

    def knn() -> float:
        return knn_balanced_accuracy(backbone, data.pixels[train_idx], data.targets[train_idx],
                                     data.pixels[val_idx], data.targets[val_idx], mean, std, device)
    if resume is None:
        state = {"epoch": 0, "planned_epochs": cfg.epochs, "history": [], "elapsed": 0.0, "knn_before": knn()}
        run_dir = ckpt.new_run_dir(cfg.project, cfg.name, cfg.exist_ok)
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / ckpt.CONFIG)
        write_manifest(run_dir / MANIFEST_FILE, data.samples, data.digests, split, data.task.labels, data.targets)
    else:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
    print(f"edgeskin pretrain: {run_dir}  (SimCLR on {len(train_idx)} train images, device {device}; "
          f"k-NN val balanced accuracy at random init {state['knn_before']:.3f})")
    # Step 3: SimCLR epochs (AdamW, warm-up + cosine as in training; AMP on a GPU), each ending in
    # an atomic checkpoint for --resume.
    loss_fn, views = NTXentLoss(temperature=cfg.temperature), TwoViews(data.pixels[train_idx], view_transform(cfg))
    while state["epoch"] < state["planned_epochs"]:
        t0 = time.time()
        loss = simclr_epoch(cfg, net, views, opt, scaler, loss_fn, state, device, mean, std)
        state["history"].append(loss)
        state["elapsed"] += time.time() - t0
        state["epoch"] += 1
        replan(state, cfg.max_minutes, cfg.epochs)
        ckpt.save(run_dir / ckpt.LAST, {**state, "net": net.state_dict(), "optimizer": opt.state_dict(),
                                        "scaler": scaler.state_dict(), "rng": rng_state()})
        tqdm.write(f"epoch {state['epoch']}/{state['planned_epochs']}  NT-Xent loss {loss:.4f}  "
                   f"{state['elapsed']:.0f}s")
    return _finish(cfg, run_dir, data, train_idx, backbone, state, knn(), describe_device(device))


def simclr_epoch(cfg: PretrainConfig, net, views: TwoViews, opt, scaler, loss_fn, state: dict, device,
                 mean, std) -> float:
    """One epoch over the training images in pairs of views; the mean NT-Xent loss."""
    g = torch.Generator().manual_seed(epoch_seed(cfg.seed, state["epoch"]))
    loader = torch.utils.data.DataLoader(views, cfg.batch_size, shuffle=True, drop_last=True,
                                         num_workers=cfg.workers, generator=g)
    mean_t, std_t = (torch.tensor(v, dtype=torch.float32, device=device) for v in (mean, std))
    steps, dtype, running = len(loader), amp_dtype(device), 0.0
    net.train()
    for i, (a, b) in enumerate(progress(loader, f"epoch {state['epoch'] + 1}/{state['planned_epochs']}",
                                        unit="batch")):
        for group in opt.param_groups:
            group["lr"] = lr_at(state["epoch"] * steps + i, state["planned_epochs"] * steps, steps, cfg.lr)
        x = normalize(torch.cat([a, b]).to(device), mean_t, std_t)
        with torch.autocast(device.type, dtype=dtype or torch.float16, enabled=dtype is not None):
            loss = loss_fn(*net(x).float().chunk(2))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        running += loss.item()
    return running / steps


def rng_state() -> dict:
    """The generators the views draw from (the transforms use torch's global one in the loading
    process), so a resumed run draws the views the uninterrupted run would have drawn."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            **({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {})}


def set_rng_state(saved: dict) -> None:
    torch.set_rng_state(saved["torch"])
    np.random.set_state(saved["numpy"])
    random.setstate(saved["python"])
    if "cuda" in saved and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda"])


def _finish(cfg: PretrainConfig, run_dir: Path, data, train_idx, backbone, state: dict, knn_after: float,
            hardware: str) -> PretrainResult:
    """Step 4: the backbone's weights, the images they saw, and a record of the run."""
    stop = "epochs done" if state["planned_epochs"] == cfg.epochs else f"time budget of {cfg.max_minutes:g} min reached"
    meta = {"method": "simclr", "backbone": cfg.backbone, "input_size": list(cfg.input_size),
            "color_constancy": cfg.color_constancy, "train_digests": [data.digests[i] for i in train_idx]}
    weights = run_dir / WEIGHTS_FILE
    ckpt.save(weights, {"state_dict": {k: v.cpu() for k, v in backbone.state_dict().items()}, META_KEY: meta})
    sha = sha256_file(weights)
    write_json(run_dir / "pretrain.json", {
        "config": dataclasses.asdict(cfg),
        "weights": WEIGHTS_FILE, "sha256": sha, "train_images": len(train_idx), "loss_history": state["history"],
        "stop_reason": stop,
        "knn_val_balanced_accuracy": {"random_init": state["knn_before"], "pretrained": knn_after},
        "minutes": round(state["elapsed"] / 60, 2), "hardware": hardware})
    print(f"edgeskin pretrain: done ({stop}); k-NN val balanced accuracy {state['knn_before']:.3f} -> {knn_after:.3f}\n"
          f"  next: edgeskin train --weights {weights} --weights-sha256 {sha} "
          f"--split-manifest {run_dir / MANIFEST_FILE} ...")
    return PretrainResult(run_dir, weights, sha, tuple(state["history"]), state["knn_before"], knn_after)


def check_unseen(weights: str | Path, held_out_digests: list[str]) -> None:
    """Refuse a run whose validation or test images were among a pre-trained file's images."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    seen = set(state.get(META_KEY, {}).get("train_digests", ())) if isinstance(state, dict) else set()
    overlap = seen.intersection(held_out_digests)
    if overlap:
        raise EdgeskinError(f"--weights {weights} was pre-trained on {len(overlap)} of this run's validation/test images; "
                            f"pass the --split-manifest `edgeskin pretrain` wrote beside it")
