"""Clinical context (age, sex, body site) as a prior added to the image model's logits.

Dermatologists read a photo together with who the patient is and where the lesion sits: a
keratosis on the face of an 80-year-old is not the same bet as on the back of a 30-year-old.
HAM10000 records age, sex and body site for almost every image. A small logistic model of the
class given that context, fitted with balanced class weights on the training split, gives
log p_bal(class | context); with an image model trained for balanced error (balanced softmax:
its logits are log p_bal(class | image) up to a constant), Bayes with the two conditionally
independent gives

    fused logits = image logits + scale * log p_bal(class | context)

where scale = 1 is that assumption and `edgeskin train` picks it on validation (0 switches the
prior off). It is numpy only, applied on the device; the card carries the fitted weights.
A value the prior does not know is an error, not a guess. A missing field (or "unknown") adds its
average effect over the training classes, not whatever the training set's few unrecorded rows
happened to be; a photo with no context at all gets no prior, i.e. the image model's own logits
(measured: an "average patient" prior, added to every photo, cost 4 points of balanced accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.errors import EdgeRuntimeError

UNKNOWN = "unknown"
AGE_EDGES = (0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0)  # bins [a, b); the last is open


@dataclass(frozen=True)
class Context:
    """One patient's context for one photo; None where it was not recorded."""
    age: float | None = None
    sex: str | None = None
    site: str | None = None


def vocab(values) -> tuple[str, ...]:
    """The recorded values of one field ("unknown" and None mean missing, not a value)."""
    return tuple(sorted({v for v in values if v is not None and v != UNKNOWN}))


def check_values(ctx: Context, sites: tuple[str, ...], sexes: tuple[str, ...]) -> None:
    """A one-line error for a value a model was not fitted on, naming the valid ones; an age
    outside 0-120 (or NaN, which compares false) likewise."""
    for name, value, known in (("body site", ctx.site, sites), ("sex", ctx.sex, sexes)):
        if value is not None and value != UNKNOWN and value not in known:
            raise EdgeRuntimeError(f"{name} {value!r} is not one this model knows; use one of "
                                   f"{list(known)} or leave it out")
    if ctx.age is not None and not 0 <= ctx.age <= 120:
        raise EdgeRuntimeError(f"age {ctx.age!r} is not an age in years; pass 0-120 or leave it out")


@dataclass(frozen=True)
class ClinicalPrior:
    sites: tuple[str, ...]  # body sites it was fitted on ("unknown" is not one: it means missing)
    sexes: tuple[str, ...]
    age_edges: tuple[float, ...]
    weights: np.ndarray  # (classes, features): logistic regression on features()
    bias: np.ndarray  # (classes,)
    scale: float  # the prior's weight against the image logits, picked on validation

    @classmethod
    def from_dict(cls, d: dict) -> "ClinicalPrior":
        return cls(tuple(d["sites"]), tuple(d["sexes"]), tuple(float(a) for a in d["age_edges"]),
                   np.asarray(d["weights"], np.float64), np.asarray(d["bias"], np.float64), float(d["scale"]))

    def to_dict(self) -> dict:
        return {"sites": list(self.sites), "sexes": list(self.sexes), "age_edges": list(self.age_edges),
                "weights": np.round(self.weights, 6).tolist(), "bias": np.round(self.bias, 6).tolist(),
                "scale": self.scale}

    def check(self, ctx: Context) -> None:
        """A one-line error for a value the prior cannot use, naming the valid ones."""
        check_values(ctx, self.sites, self.sexes)

    def groups(self) -> tuple[slice, slice, slice]:
        """Where body site, sex and age bin sit in features()."""
        a, b = len(self.sites), len(self.sites) + len(self.sexes)
        return slice(0, a), slice(a, b), slice(b, b + len(self.age_edges))

    def features(self, ctx: Context) -> np.ndarray:
        """One-hot body site, sex and ten-year age bin; a missing field is all zeros."""
        self.check(ctx)
        f = [float(ctx.site == s) for s in self.sites] + [float(ctx.sex == s) for s in self.sexes]
        b = None if ctx.age is None else int(np.searchsorted(self.age_edges, ctx.age, side="right")) - 1
        return np.asarray(f + [float(i == b) for i in range(len(self.age_edges))], np.float64)

    def log_prior(self, ctx: Context) -> np.ndarray:
        """scale * log p_bal(class | context): what is added to the image logits; zeros when no
        field is recorded."""
        f = self.features(ctx)
        if not f.any():
            return np.zeros(len(self.bias), np.float32)
        z = self.weights @ f + self.bias
        z = z - z.max()
        return (self.scale * (z - np.log(np.exp(z).sum()))).astype(np.float32)
