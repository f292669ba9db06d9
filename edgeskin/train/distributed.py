"""`torchrun` support: one process per device, DistributedDataParallel, rank 0 writes.

torchrun (single-node `--nproc_per_node N`, multi-node through its rendezvous `--nnodes`,
`--rdzv-endpoint`) sets RANK, WORLD_SIZE and LOCAL_RANK for every process; without them this is a
1-process run and nothing here changes it. The backend is NCCL on GPUs and Gloo on CPU
(torch.distributed docs, "Which backend to use?").

The global batch stays --batch-size: each rank draws --batch-size / WORLD_SIZE images a step from
its share of ONE sampler sequence that every rank draws alike (seeded by (seed, epoch)). Rank r
takes positions r, r + W, r + 2W, ..., so step i's images across the ranks are exactly the
1-process run's step i batch: the weighted (class- or source-balanced) sampling is the same
distribution, and DDP's gradient average equals the 1-process gradient up to BatchNorm
statistics, which stay per rank (like timm without --sync-bn), and augmentation draws.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist

from edgeskin.errors import EdgeskinError
from edgeskin.predict import resolve_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """The process that writes the run folder, checkpoints and card, and prints."""
        return self.rank == 0

    @property
    def on(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.on:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (decoding and caching the images, generating --data
        synthetic), the others after it, so they read its cache instead of racing to write it."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()

    def mean(self, value: float) -> float:
        """`value` averaged over the ranks (the epoch's training loss)."""
        if not self.on:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def shard(self, indices: np.ndarray) -> np.ndarray:
        """This rank's share of `indices` (positions rank, rank + W, ...), for gather_rows."""
        return indices[self.rank::self.world]

    def gather_rows(self, rows: np.ndarray, n: int) -> np.ndarray:
        """Every rank's `rows` (from shard() of n items) put back in the original order, on every
        rank, so all ranks compute the same validation metrics and take the same decisions."""
        if not self.on:
            return rows
        parts: list = [None] * self.world
        dist.all_gather_object(parts, rows)
        out = np.empty((n, *rows.shape[1:]), rows.dtype)
        for r, part in enumerate(parts):
            out[r::self.world] = part
        return out

    def broadcast(self, value):
        """Rank 0's `value` on every rank (e.g. the run folder it created)."""
        if not self.on:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def setup(device_choice: str, batch_size: int) -> tuple[Dist, torch.device]:
    """The process group from torchrun's environment, and this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_choice)
    if world == 1:
        return Dist(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if batch_size % world or batch_size // world < 2:
        raise EdgeskinError(f"--batch-size {batch_size} over {world} processes; use a multiple of {world} "
                            f"of at least {2 * world} (it is the global batch, split evenly across the ranks)")
    if device.type == "cuda":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=30))
    return Dist(rank, world), device


def teardown(d: Dist) -> None:
    if d.on and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class RankShard(torch.utils.data.Sampler):
    """Positions rank, rank + W, ... of `base`'s sequence (the same on every rank, since its
    generator is seeded alike), cut to a multiple of W so every rank takes the same number of
    steps (DDP hangs if one rank runs a step the others do not)."""

    def __init__(self, base: torch.utils.data.Sampler, rank: int, world: int):
        self.base, self.rank, self.world = base, rank, world

    def __iter__(self):
        seq = list(self.base)
        seq = seq[: len(seq) - len(seq) % self.world]
        return iter(seq[self.rank::self.world])

    def __len__(self) -> int:
        return len(self.base) // self.world


def wrap(model: torch.nn.Module, d: Dist, device: torch.device) -> torch.nn.Module:
    """The module training steps go through: DDP on several ranks, the model itself on one."""
    if not d.on:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
