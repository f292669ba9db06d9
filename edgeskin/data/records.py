"""What one labelled image is, and how a task maps diagnoses to class labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeskin.errors import EdgeskinError

# HAM10000 `dx` codes, in the dataset's (alphabetical) order: the multiclass label order.
HAM_LABELS = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
# Malignant or pre-malignant: melanoma, basal cell carcinoma, actinic keratosis / Bowen's disease.
MALIGNANT = frozenset({"mel", "bcc", "akiec"})
BINARY_LABELS = ("benign", "malignant")


@dataclass(frozen=True)
class Sample:
    path: Path
    image_id: str
    dx: str  # the diagnosis as the source wrote it (a HAM code, or benign/malignant)
    lesion_id: str  # images of one lesion share it; the image_id when the source has none
    age: float | None = None
    sex: str | None = None
    site: str | None = None
    source: str = ""  # the clinic/archive the image came from (a --data NAME or its `source` column)


@dataclass(frozen=True)
class Task:
    """A task is its label list plus the rule that maps a source diagnosis onto it."""

    name: str
    labels: tuple[str, ...]
    positive_label: str  # the class whose sensitivity/specificity is reported

    def target(self, dx: str, where: str, label_map: dict[str, str] | None = None) -> int:
        """The class index of diagnosis `dx` (after `label_map`, e.g. scc -> akiec); `where` names
        the file/row for the error message."""
        dx = (label_map or {}).get(dx, dx)
        if self.name == "binary" and dx in HAM_LABELS:
            dx = "malignant" if dx in MALIGNANT else "benign"
        try:
            return self.labels.index(dx)
        except ValueError:
            valid = list(self.labels) + (list(HAM_LABELS) if self.name == "binary" else [])
            raise EdgeskinError(
                f"unknown label {dx!r} in {where}; task {self.name!r} accepts {valid} "
                f"(map it with --label-map {dx}=LABEL, e.g. --label-map scc=akiec, fix the label, "
                "or choose another --task)"
            ) from None


TASKS = {
    "multiclass": Task("multiclass", HAM_LABELS, "mel"),
    "binary": Task("binary", BINARY_LABELS, "malignant"),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise EdgeskinError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]


def parse_label_map(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """('scc=akiec', ...) -> {'scc': 'akiec'}: how a source's extra diagnoses join the task's classes."""
    out: dict[str, str] = {}
    for pair in pairs:
        src, sep, dst = (p.strip() for p in str(pair).partition("="))
        if not sep or not src or not dst:
            raise EdgeskinError(f"--label-map {pair!r}; write SOURCE=LABEL, e.g. --label-map scc=akiec")
        out[src] = dst
    return out
