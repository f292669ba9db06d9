"""Step 4 of `edgeskin tune`: report.md with every trial, Optuna's optimisation history and
parameter importances (its matplotlib backend), and report.json for programs."""

from __future__ import annotations

import warnings
from pathlib import Path

from edgeskin.config import TuneConfig
from edgeskin.fileio import atomic_path, write_json, write_text

HISTORY_PNG = "history.png"
IMPORTANCE_PNG = "importance.png"


def write_report(study, study_dir: Path, cfg: TuneConfig) -> Path:
    import optuna

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    importances, why = _importances(study, complete)
    _plot(optuna.visualization.matplotlib.plot_optimization_history, study, study_dir / HISTORY_PNG,
          ylabel="validation balanced accuracy")
    if importances:
        _plot(optuna.visualization.matplotlib.plot_param_importances, study, study_dir / IMPORTANCE_PNG)
    best = study.best_trial
    rows = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
             "epochs": t.user_attrs.get("epochs"), "retry_of": t.system_attrs.get("failed_trial")} for t in trials]
    write_json(study_dir / "report.json", {
        "study": cfg.study, "recipe": cfg.recipe, "objective": "validation balanced accuracy (maximised)",
        "sampler": "TPE", "pruner": cfg.pruner, "params": list(cfg.params), "train_options": dict(cfg.train),
        "trials": rows, "best": {"number": best.number, "value": best.value, "params": best.params},
        "importances": importances})
    lines = [f"# Tuning study `{cfg.study}`", "",
             (f"Recipe `{cfg.recipe}`" if cfg.recipe else "No recipe") + (f" with `{_options(cfg)}`" if cfg.train else "") +
             f"; {len(trials)} trials ({len(complete)} complete), TPE sampler, {cfg.pruner} pruner. "
             "Objective: the best epoch's **validation** balanced accuracy; the test split is never scored.", "",
             f"Best: trial {best.number}, {best.value:.4f}, {_params(best.params)}. "
             "`edgeskin train --config best_config.json` trains it again.", "",
             "| trial | state | val balanced accuracy | epochs | parameters |", "|---|---|---|---|---|"]
    for r in rows:
        value = f"{r['value']:.4f}" if r["value"] is not None else "-"
        retry = f" (retry of {r['retry_of']})" if r["retry_of"] is not None else ""
        lines.append(f"| {r['number']}{retry} | {r['state'].lower()} | {value} | {r['epochs'] or '-'} | "
                     f"{_params(r['params'])} |")
    lines += ["", "## Optimisation history", "", f"![history]({HISTORY_PNG})", "", "## Parameter importance", ""]
    if importances:
        lines += ["fANOVA importance of each parameter for the objective, over the complete trials "
                  "(Optuna's default evaluator; few trials make it rough).", "",
                  "| parameter | importance |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in importances.items()]
        lines += ["", f"![importance]({IMPORTANCE_PNG})"]
    else:
        lines.append(why)
    path = study_dir / "report.md"
    write_text(path, "\n".join(lines) + "\n")
    return path


def _importances(study, complete) -> tuple[dict[str, float], str]:
    import optuna

    if len(complete) < 2:
        return {}, f"Needs at least 2 complete trials (has {len(complete)})."
    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}, ""
    except (RuntimeError, ValueError) as e:  # e.g. every complete trial drew the same values
        return {}, f"Not computed: {str(e).splitlines()[0]}"


def _plot(fn, study, path: Path, ylabel: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = fn(study)
    if ylabel:
        ax.set_ylabel(ylabel)
    fig = ax.figure
    fig.set_size_inches(7, 4)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _params(params: dict) -> str:
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())


def _options(cfg: TuneConfig) -> str:
    parts = []
    for k, v in cfg.train:
        flag = f"--{k.replace('_', '-')}"
        if k == "input_size":
            parts.append(f"{flag} {'x'.join(map(str, v))}")
        elif isinstance(v, tuple):  # a repeatable option (--data A --data B)
            parts += [f"{flag} {x}" for x in v]
        elif isinstance(v, bool):
            parts.append(flag if v else f"--no-{flag[2:]}")
        else:
            parts.append(f"{flag} {v}")
    return " ".join(parts)
