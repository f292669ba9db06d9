"""`edgeskin tune`: an Optuna study over a recipe's training options, judged on validation only.

Numbered steps: 1. the study (TPE sampler, median pruner, an RDB storage with heartbeats) ->
2. trials until --trials have finished -> 3. the best trial's config as a file `edgeskin train
--config` takes -> 4. a report with Optuna's history and parameter-importance plots.

Each trial is a plain `edgeskin train` run (runs/tune/STUDY/trials/trial-N) that reports its
validation balanced accuracy after every epoch, so the pruner can stop a poor one early; the
test split is never scored. Several machines may share one study through one storage URL
(Optuna's RDB storages, e.g. PostgreSQL). A trial whose process died (a kill, a lost machine)
stops sending heartbeats; after two intervals the next worker fails it and retries its
parameters, resuming its run folder from the last checkpoint (optuna.storages.
RetryHeartbeatStaleTrialCallback), so a killed study resumes by running the same command again.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgeskin.config import TrainConfig, TuneConfig
from edgeskin.errors import EdgeskinError
from edgeskin.fileio import write_json
from edgeskin.recipes import PLACE_FIELDS, recipe_config

BEST_CONFIG = "best_config.json"
REPORT = "report.md"
# Backbone families whose width the study may change (`width`): the same network, narrower or wider.
WIDTHS = {"edgeskin_cnn": ("edgeskin_cnn_s", "edgeskin_cnn_m", "edgeskin_cnn_l"),
          "mobilenetv3_small": ("mobilenetv3_small_050", "mobilenetv3_small_075", "mobilenetv3_small_100"),
          "mobilenetv3_large": ("mobilenetv3_large_075", "mobilenetv3_large_100")}
SIZE_SCALES = (0.75, 1.0, 1.25)  # `input_size`: the recipe's size scaled, in multiples of 8


@dataclass(frozen=True)
class TuneResult:
    study_dir: Path
    finished: int  # trials complete or pruned
    best_number: int
    best_value: float  # validation balanced accuracy
    best_params: dict[str, Any]
    best_config: Path
    report: Path


# Step 1's search space: one tiny builder per parameter, each suggesting the TrainConfig fields it sets.

def _width_choices(backbone: str) -> tuple[str, ...]:
    for family, names in WIDTHS.items():
        if backbone in names:
            return names
    raise EdgeskinError(f"--params width: backbone {backbone!r} has no width family here "
                        f"({', '.join(WIDTHS)}); drop width from --params")


def _sizes(base: tuple[int, int]) -> list[str]:
    return [f"{max(16, round(base[0] * s / 8) * 8)}x{max(16, round(base[1] * s / 8) * 8)}" for s in SIZE_SCALES]


def suggest(trial, name: str, base: TrainConfig) -> dict[str, Any]:
    """The TrainConfig fields parameter `name` sets for `trial` (ranges around common defaults;
    the integer-like choices are categorical, so TPE does not interpolate between them)."""
    if name == "lr":
        return {"lr": trial.suggest_float("lr", base.lr / 10, base.lr * 5, log=True)}
    if name == "weight_decay":
        return {"weight_decay": trial.suggest_float("weight_decay", 1e-4, 0.2, log=True)}
    if name == "label_smoothing":
        return {"label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.2)}
    if name == "augment":
        return {"augment": trial.suggest_categorical("augment", ["light", "standard", "strong"])}
    if name == "mixup":
        return {"mixup": trial.suggest_float("mixup", 0.0, 0.5)}
    if name == "input_size":
        h, w = trial.suggest_categorical("input_size", _sizes(base.input_size)).split("x")
        return {"input_size": (int(h), int(w))}
    if name == "width":
        return {"backbone": trial.suggest_categorical("width", list(_width_choices(base.backbone)))}
    raise AssertionError(name)  # TuneConfig has checked the names


# Steps 1-2 ---------------------------------------------------------------------------------

def tune(cfg: TuneConfig) -> TuneResult:
    from edgeskin.extras import require

    require("edgeskin tune", "tune")
    import optuna

    base = recipe_config(cfg.recipe, dict(cfg.train))
    if "width" in cfg.params:
        _width_choices(base.backbone)  # before any trial runs
    if "mixup" in cfg.params and base.mask_guidance:
        raise EdgeskinError("--params mixup with --mask-guidance; a mixed image has no single lesion mask, "
                            "drop one of them")
    study_dir = Path(cfg.project) / cfg.study
    study_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # edgeskin prints one line per trial itself
    study = _study(cfg, study_dir)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=states))
    print(f"edgeskin tune: study {cfg.study!r} in {study_dir} ({done}/{cfg.trials} trials finished)")
    if done < cfg.trials:
        study.optimize(_objective(cfg, base, study_dir), callbacks=[
            optuna.study.MaxTrialsCallback(cfg.trials, states=states), _say_trial])
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise EdgeskinError(f"study {cfg.study!r}: no trial completed (all were pruned or failed); "
                            "run more --trials or use --pruner none")
    best = study.best_trial
    best_config = _write_best(study_dir, best)
    from edgeskin.tune_report import write_report

    report = write_report(study, study_dir, cfg)
    finished = len(study.get_trials(deepcopy=False, states=states))
    print(f"edgeskin tune: best trial {best.number}, val balanced accuracy {best.value:.4f}; "
          f"{best_config} (edgeskin train --config {best_config}); report {report}")
    return TuneResult(study_dir, finished, best.number, best.value, dict(best.params), best_config, report)


def _study(cfg: TuneConfig, study_dir: Path):
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    url = cfg.storage or f"sqlite:///{(study_dir / 'study.db').resolve()}"
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8, unchanged since
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = RDBStorage(url, heartbeat_interval=cfg.heartbeat_s, grace_period=2 * cfg.heartbeat_s,
                                 heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))
    except Exception as e:  # sqlalchemy's errors name the URL's problem on their first line
        raise EdgeskinError(f"--storage {url}: {str(e).splitlines()[0]}; use an Optuna RDB URL such as "
                            "sqlite:///tune.db or postgresql://user@host/db") from None
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1) if cfg.pruner == "median"
              else optuna.pruners.NopPruner())
    return optuna.create_study(storage=storage, study_name=cfg.study, direction="maximize", load_if_exists=True,
                               sampler=optuna.samplers.TPESampler(seed=cfg.seed), pruner=pruner)


def _objective(cfg: TuneConfig, base: TrainConfig, study_dir: Path) -> Callable:
    from edgeskin.train import train

    trials_dir = study_dir / "trials"

    def objective(trial) -> float:
        import optuna
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        fields: dict[str, Any] = {}
        for name in cfg.params:
            fields.update(suggest(trial, name, base))

        def report(epoch: int, val: dict) -> None:
            trial.report(val["balanced_accuracy"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        # A retry of a killed trial (same parameters) continues its run folder from the last checkpoint.
        frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
        with warnings.catch_warnings():  # experimental since Optuna 2.8, unchanged since
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            first = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
        killed = trials_dir / f"trial-{first}" if first is not None else None
        if killed is not None and (killed / "last.pt").is_file() and not (killed / "model_card.json").is_file():
            trial.set_user_attr("run", str(killed))
            result = train(resume=killed, on_epoch=report)
        else:
            run_cfg = dataclasses.replace(base, **fields, project=str(trials_dir), name=f"trial-{trial.number}",
                                          exist_ok=True)
            trial.set_user_attr("run", str(trials_dir / run_cfg.name))
            result = train(run_cfg, on_epoch=report)
        trial.set_user_attr("epochs", result.epochs_run)
        trial.set_user_attr("val_auc_macro", result.card.metrics["val"]["auc_macro"])
        return float(result.card.metrics["val"]["balanced_accuracy"])
    return objective


def _say_trial(study, trial) -> None:
    value = f"{trial.value:.4f}" if trial.value is not None else "-"
    print(f"edgeskin tune: trial {trial.number} {trial.state.name.lower()} (val balanced accuracy {value}) "
          f"{dict(trial.params)}", flush=True)


# Step 3 ------------------------------------------------------------------------------------

def _write_best(study_dir: Path, best) -> Path:
    """The best trial's full TrainConfig, less where its run went: `edgeskin train --config` runs it
    again (give it more --epochs for the final model)."""
    saved = TrainConfig.load(Path(best.user_attrs["run"]) / "config.json")
    fields = {k: v for k, v in dataclasses.asdict(saved).items() if k not in PLACE_FIELDS}
    path = study_dir / BEST_CONFIG
    write_json(path, fields)
    return path

