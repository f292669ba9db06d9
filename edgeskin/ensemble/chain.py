"""`edgeskin chain`: a born-again distillation chain (Furlanello et al. 2018) in one command.

On HAM10000 from scratch, the edge CNN's best recipe is not one run but generations of runs: one
run per seed, then the same recipe again with every run of the generation before as its teacher
ensemble (benchmarks/results/ham10000_ablation.md: 0.632 -> 0.650 -> 0.675 -> 0.680 test balanced
accuracy for `ham-edge-robust`'s 12, 12, 18, 18 epochs). By hand that is twelve `edgeskin train`
runs, each naming the split and three teachers; here it is one command, and re-running it goes
on where it stopped.

Steps: 1. check the options and the data (bad input fails before a folder exists);
2. one lesion-grouped split manifest for every run (teachers must not have seen a student's
validation or test images); 3. each generation: train (or reuse, or resume) its runs, then
average them into one model (`edgeskin ensemble`, with its own clinical prior when the recipe
fits one) and score it on validation, so the summary shows whether the students still beat
their teachers; 4. chain.json after every generation.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeskin.config import ChainConfig, EnsembleConfig, TrainConfig
from edgeskin.data.split import MANIFEST_FILE, write_manifest
from edgeskin.errors import EdgeskinError
from edgeskin.fileio import write_json
from edgeskin.recipes import CHAINS, recipe_config
from edgeskin.train import checkpoint as ckpt

CHAIN_CONFIG = "chain_config.json"
SUMMARY = "chain.json"


def run_config(cfg: ChainConfig, generation: int, seed: int, teachers: tuple[str, ...], split_manifest: str,
               run_dir: Path) -> TrainConfig:
    """The config of one run: generation `generation` (1-based), taught by `teachers`."""
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.overrides.items()}  # from JSON
    if split_manifest:  # it lists the --max-images subset, one for all seeds (a run's own is per seed)
        given["max_images"] = None
    return recipe_config(cfg.recipe, {**given, "epochs": cfg.generations[generation - 1],
                                      "seed": seed, "teacher": teachers, "split_manifest": split_manifest,
                                      "project": str(run_dir.parent), "name": run_dir.name, "exist_ok": True})


@dataclass(frozen=True)
class Generation:
    index: int  # 1-based
    epochs: int
    runs: tuple[str, ...]  # one per seed, in seed order
    val_balanced_accuracy: tuple[float, ...]  # each run's best validation score
    ensemble: str | None  # the runs as one model (None for one seed)
    ensemble_val_balanced_accuracy: float | None
    ensemble_val_with_prior: float | None  # with its clinical prior (validation also picked its weight)


@dataclass(frozen=True)
class ChainResult:
    chain_dir: Path
    generations: tuple[Generation, ...]
    best_run: Path  # the last generation's run with the best validation balanced accuracy


def chain_config(recipe: str | None, generations: tuple[int, ...] | None, **fields: Any) -> ChainConfig:
    """A chain with the recipe's own generations (CHAINS) unless `generations` is given."""
    given = fields.get("overrides") or {}
    if given.get("split_manifest") and given.get("max_images"):  # train_config would drop it silently
        raise EdgeskinError(f"--max-images {given['max_images']} with --split-manifest: the manifest already "
                            "picks the images, so leave out --max-images")
    if not generations:
        if recipe not in CHAINS:
            named = ", ".join(f"{k} ({','.join(map(str, v))})" for k, v in sorted(CHAINS.items()))
            raise EdgeskinError(f"recipe {recipe!r} has no distillation chain; pass --generations (each "
                                f"generation's epochs, e.g. 12,12,18,18) or a recipe that has one: {named}")
        generations = CHAINS[recipe]
    return ChainConfig(recipe=recipe, generations=tuple(generations), **fields)


def run_chain(cfg: ChainConfig | None = None, resume: str | Path | None = None) -> ChainResult:
    """Run the chain `cfg` in a new folder, or go on with the chain folder `resume`."""
    if (cfg is None) == (resume is None):
        raise EdgeskinError("pass either a chain config or a chain folder to resume, not both")
    if resume is not None:
        chain_dir = Path(resume)
        cfg = ChainConfig.load(chain_dir / CHAIN_CONFIG)
        manifest = chain_dir / MANIFEST_FILE
    else:
        chain_dir, manifest = _start(cfg)
    generations: list[Generation] = []
    teachers: tuple[str, ...] = ()
    for g in range(1, len(cfg.generations) + 1):
        gen = _generation(cfg, chain_dir, g, teachers, str(manifest))
        generations.append(gen)
        write_json(chain_dir / SUMMARY, {"config": asdict(cfg), "generations": [asdict(x) for x in generations]})
        teachers = gen.runs
    last = generations[-1]
    best = max(zip(last.val_balanced_accuracy, last.runs))[1]
    print(summary_table(generations))
    return ChainResult(chain_dir, tuple(generations), Path(best))


def _start(cfg: ChainConfig) -> tuple[Path, Path]:
    """Steps 1-2: the first run's config is checked and the data split before the folder exists."""
    from edgeskin.train.prepare import check_options, prepare_data

    first = run_config(cfg, 1, cfg.seeds[0], (), cfg.overrides.get("split_manifest") or "", Path(cfg.project))
    check_options(first)
    data, split = prepare_data(first)  # the user's --split-manifest, or a new split (seed: the first)
    chain_dir = ckpt.new_run_dir(cfg.project, cfg.name, cfg.exist_ok)
    if cfg.exist_ok and chain_dir.exists():
        shutil.rmtree(chain_dir)
    chain_dir.mkdir(parents=True)
    cfg.save(chain_dir / CHAIN_CONFIG)
    manifest = chain_dir / MANIFEST_FILE
    write_manifest(manifest, data.samples, data.digests, split, data.task.labels, data.targets)
    print(f"edgeskin chain: {chain_dir}  ({len(cfg.generations)} generations x {len(cfg.seeds)} seeds, "
          f"epochs {', '.join(map(str, cfg.generations))})")
    return chain_dir, manifest


def _generation(cfg: ChainConfig, chain_dir: Path, g: int, teachers: tuple[str, ...], manifest: str) -> Generation:
    """Step 3 for generation g: its runs (reused when finished, resumed when killed), then as one."""
    from edgeskin.card import ModelCard
    from edgeskin.train.reuse import train_side_by_side

    configs = [run_config(cfg, g, s, teachers, manifest, chain_dir / f"g{g}-s{s}") for s in cfg.seeds]
    runs = tuple(str(p) for p in train_side_by_side(configs, cfg.parallel))
    scores = tuple(float(ModelCard.load(Path(r)).metrics["val"]["balanced_accuracy"]) for r in runs)
    if len(runs) == 1:
        return Generation(g, cfg.generations[g - 1], runs, scores, None, None, None)
    card = _as_one(runs, chain_dir / f"g{g}-ensemble", configs[0].clinical, configs[0].device)
    prior = card.clinical
    with_prior = None if prior is None else float(prior["val_balanced_accuracy"][f"{prior['scale']:g}"])
    return Generation(g, cfg.generations[g - 1], runs, scores, str(chain_dir / f"g{g}-ensemble"),
                      float(card.metrics["val"]["balanced_accuracy"]), with_prior)


def _as_one(runs: tuple[str, ...], target: Path, clinical: bool, device: str):
    """The generation's runs as one model (`edgeskin ensemble`), with its own clinical prior when
    the recipe fits one (the members' do not carry over). One already written for these very
    weights (a resumed chain) is kept: rebuilding it would give the same card."""
    from edgeskin.card import ModelCard
    from edgeskin.ensemble.build import build_ensemble

    members = [ModelCard.load(Path(r)).weights["sha256"] for r in runs]
    if (target / "model_card.json").is_file():
        card = ModelCard.load(target)
        if (card.ensemble and [m["weights_sha256"] for m in card.ensemble["runs"]] == members
                and "val" in card.metrics and (card.clinical is not None or not clinical)):
            return card
    build_ensemble(EnsembleConfig(runs=runs, project=str(target.parent), name=target.name, exist_ok=True,
                                  bootstrap=0, device=device))
    if clinical:
        from edgeskin.config import PriorConfig
        from edgeskin.train.clinical import fit_run_prior

        fit_run_prior(PriorConfig(run=str(target), device=device))
    return ModelCard.load(target)


def summary_table(generations: list[Generation]) -> str:
    """Validation balanced accuracy per generation: each run, their mean, and the runs as one."""
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"
    lines = ["generation  epochs  val balanced accuracy per seed   mean    as one model  + clinical prior"]
    for gen in generations:
        per_seed = " ".join(f"{v:.3f}" for v in gen.val_balanced_accuracy)
        mean = sum(gen.val_balanced_accuracy) / len(gen.val_balanced_accuracy)
        lines.append(f"{gen.index:>10}  {gen.epochs:>6}  {per_seed:<31}  {mean:.3f}  "
                     f"{fmt(gen.ensemble_val_balanced_accuracy):<12}  {fmt(gen.ensemble_val_with_prior)}")
    return "\n".join(lines)
