"""Knowledge distillation from an ensemble of finished runs into the run being trained.

The student learns from the labels and from the ensemble's softened class probabilities
(Hinton et al. 2015, "Distilling the Knowledge in a Neural Network"): loss =
(1 - alpha) * hard loss + alpha * T^2 * KL(teacher || student), both at temperature T. An
ensemble of a few seeds is a better teacher than any one of them and costs nothing on the
device, since only the student is exported.

Teachers see the student's augmented (and mixed) batch. Each gets it in its own preprocessing:
un-normalised with the student's mean/std, resized to the teacher's input size, normalised with
the teacher's card. Colour constancy is applied before the batch exists, so teacher and student
must share it; a teacher trained on any of the student's validation or test images would leak
those labels into the student, so such a teacher is refused.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from edgeskin.card import ModelCard
from edgeskin.config import TrainConfig
from edgeskin.data.records import Sample
from edgeskin.data.split import Split
from edgeskin.errors import EdgeskinError
from edgeskin.train.runs import load_run_model
from edgeskin.train import checkpoint as ckpt


@dataclass(frozen=True)
class TeacherModel:
    model: torch.nn.Module
    input_size: tuple[int, int]
    mean: torch.Tensor
    std: torch.Tensor


class Distiller:
    """Blends a batch's hard loss with the distillation loss against the teacher ensemble."""

    def __init__(self, teachers: Sequence[TeacherModel], alpha: float, temperature: float,
                 mean: torch.Tensor, std: torch.Tensor):
        self.teachers, self.alpha, self.temperature = tuple(teachers), alpha, temperature
        self.mean, self.std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)

    @torch.no_grad()
    def teacher_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the teachers' probabilities at temperature T for the student's normalised batch."""
        pixels = x.float() * self.std + self.mean  # back to [0, 1]; exact for MixUp/CutMix (affine)
        probs = []
        for t in self.teachers:
            xi = pixels
            if tuple(xi.shape[-2:]) != t.input_size:
                xi = F.interpolate(xi, size=t.input_size, mode="bilinear", antialias=True, align_corners=False)
            xi = (xi - t.mean.view(1, -1, 1, 1)) / t.std.view(1, -1, 1, 1)
            probs.append(torch.softmax(t.model(xi).float() / self.temperature, dim=1))
        return torch.stack(probs).mean(0)

    def __call__(self, hard: torch.Tensor, student_logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        target = self.teacher_probs(x)
        log_student = F.log_softmax(student_logits.float() / self.temperature, dim=1)
        # T^2 keeps the soft term's gradient scale independent of T (Hinton et al., section 2).
        soft = F.kl_div(log_student, target, reduction="batchmean") * self.temperature ** 2
        return (1 - self.alpha) * hard + self.alpha * soft


def _train_side(run_dir: Path, card: ModelCard) -> set[str]:
    manifest = run_dir / card.split.manifest
    if not manifest.is_file():  # without it, leakage into this run's val/test cannot be ruled out
        raise EdgeskinError(f"--teacher {run_dir} has no {card.split.manifest}; pass a run written by `edgeskin train`")
    with open(manifest, newline="") as f:
        return {row["image_id"] for row in csv.DictReader(f) if row["split"] == "train"}


def load_teachers(cfg: TrainConfig, labels: Sequence[str], samples: Sequence[Sample], split: Split,
                  device: torch.device) -> list[TeacherModel]:
    """The runs named by cfg.teacher, each checked against the student: same labels, same colour
    constancy and objective, and no student validation/test image in its training side."""
    held_out = {s.image_id for s, side in zip(samples, split.assignment) if side != "train"}
    teachers = []
    for path in cfg.teacher:
        run_dir = Path(path)  # its model_card.json was checked in check_options
        card = ModelCard.load(run_dir)
        tcfg = TrainConfig.load(run_dir / ckpt.CONFIG)
        mismatch = [(what, theirs, ours) for what, theirs, ours in (
            ("labels", tuple(card.labels), tuple(labels)),
            ("--color-constancy", card.preprocessing.color_constancy, cfg.color_constancy),
            ("--loss", tcfg.loss, cfg.loss)) if theirs != ours]
        if mismatch:
            what, theirs, ours = mismatch[0]
            raise EdgeskinError(f"--teacher {run_dir} has {what} {theirs!r}, this run {ours!r}; "
                                "distil from runs trained with the same setting")
        leaked = _train_side(run_dir, card) & held_out
        if leaked:
            raise EdgeskinError(f"--teacher {run_dir} was trained on {len(leaked)} of this run's val/test images "
                                f"(e.g. {min(leaked)!r}); train the teacher on the same split (--split-manifest)")
        pre = card.preprocessing
        teachers.append(TeacherModel(load_run_model(run_dir, card, device), tuple(pre.input_size),
                                     torch.tensor(pre.mean, dtype=torch.float32, device=device),
                                     torch.tensor(pre.std, dtype=torch.float32, device=device)))
    return teachers
