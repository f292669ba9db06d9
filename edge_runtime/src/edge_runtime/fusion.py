"""The patient context as the vector a fused image + metadata network takes as its second input.

Layout (the card stores it, so the device encodes exactly as training did):

    [age / AGE_SCALE, age missing, sex one-hot..., sex unknown, site one-hot..., site unknown]

A field left out (None or "unknown") is encoded as missing: the age slot 0 with its flag set, or
the field's "unknown" slot. Training drops each field at random (`drop_fields`), so a device may
omit any of them and get what the network learned for "not recorded". Numpy only, like the rest
of edge_runtime; the vocabularies are the training split's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from edge_runtime.clinical import Context, check_values, vocab
from edge_runtime.errors import EdgeRuntimeError

AGE_SCALE = 100.0  # years -> about [0, 1]
FIELDS = ("age", "sex", "site")


@dataclass(frozen=True)
class ContextEncoding:
    sexes: tuple[str, ...]  # the training split's recorded values ("unknown" is its own slot)
    sites: tuple[str, ...]

    @classmethod
    def fit(cls, contexts: Iterable[Context]) -> "ContextEncoding":
        contexts = list(contexts)
        return cls(vocab(c.sex for c in contexts), vocab(c.site for c in contexts))

    @classmethod
    def from_dict(cls, d: dict) -> "ContextEncoding":
        if d.get("age_scale", AGE_SCALE) != AGE_SCALE:
            raise EdgeRuntimeError(f"the card encodes age / {d['age_scale']}, this edge_runtime / {AGE_SCALE}; "
                                   "upgrade edgeskin-runtime")
        return cls(tuple(d["sexes"]), tuple(d["sites"]))

    def to_dict(self) -> dict:
        return {"layout": self.layout(), "age_scale": AGE_SCALE, "sexes": list(self.sexes),
                "sites": list(self.sites)}

    @property
    def dim(self) -> int:
        return 2 + len(self.sexes) + 1 + len(self.sites) + 1

    def layout(self) -> list[str]:
        """One name per slot, in order: what the card shows a device developer."""
        return (["age/100", "age missing"] + [f"sex={s}" for s in self.sexes] + ["sex=unknown"]
                + [f"site={s}" for s in self.sites] + ["site=unknown"])

    def slots(self) -> dict[str, slice]:
        """Where each field sits in the vector."""
        a = 2 + len(self.sexes) + 1
        return {"age": slice(0, 2), "sex": slice(2, a), "site": slice(a, self.dim)}

    def check(self, ctx: Context) -> None:
        """A one-line error for a value the network was not trained on, naming the valid ones."""
        check_values(ctx, self.sites, self.sexes)

    def encode(self, ctx: Context | None = None) -> np.ndarray:
        ctx = ctx or Context()
        self.check(ctx)
        v = np.zeros(self.dim, np.float32)
        if ctx.age is None:
            v[1] = 1.0
        else:
            v[0] = float(ctx.age) / AGE_SCALE
        slots = self.slots()
        for name, value, known in (("sex", ctx.sex, self.sexes), ("site", ctx.site, self.sites)):
            s = slots[name]
            v[s.start + (known.index(value) if value in known else len(known))] = 1.0
        return v

    def encode_all(self, contexts: Iterable[Context]) -> np.ndarray:
        rows = [self.encode(c) for c in contexts]
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)

    def drop_fields(self, vectors: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
        """Each field of each row replaced by "missing" with probability p (training's field dropout)."""
        out = np.array(vectors, np.float32, copy=True)
        missing = self.encode(Context())
        for s in self.slots().values():
            rows = rng.random(len(out)) < p
            out[rows, s] = missing[s]
        return out
