"""The `edgeskin` command. Each command parses, builds a frozen config, and calls one function."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgeskin.config import CHAIN_SETS, DEVICES, PRUNE_MODES, PRUNERS
from edgeskin.config import PARAMS as TUNE_PARAMS

from edgeskin.recipes import CHAINS, RECIPES
from edge_runtime.preprocess import CONSTANCY

from edgeskin.cli_options import TASK_CHOICES, TRAINING, parse_data, parse_ints, parse_size, with_options
from edgeskin.errors import EdgeskinError, one_line

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgeskin")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error instead of its one line.")
def cli(debug) -> None:
    """Train, evaluate and deploy an explainable skin-lesion classifier."""
    _DEBUG[0] = debug


_DEBUG = [False]  # set by the group's --debug before any command runs; read by main()


@cli.command()
@click.option("--recipe", type=click.Choice(sorted(RECIPES)), help="Named setup; explicit options override it.")
@with_options(*TRAINING.values())
@click.option("--project", help="Parent folder of runs (default runs/train).")
@click.option("--name", help="Run name (default exp; exp2, exp3... when taken).")
@click.option("--exist-ok", is_flag=True, default=None, help="Overwrite the run NAME if it exists.")
@click.option("--resume", type=click.Path(), help="Continue a killed run from its last checkpoint.")
@click.option("--config", "config_file", type=click.Path(),
              help="JSON/YAML file of train options (e.g. `edgeskin tune`'s best_config.json); explicit options override it.")
@click.option("--folds", type=int, help="K-fold cross-validation: K lesion-grouped runs, each tested on its own "
              "fold, and one report with mean ± std.")
def train(resume, recipe, config_file, folds, **options) -> None:
    """Train a classifier; writes checkpoint, split manifest and model card to a run directory."""
    from edgeskin.recipes import recipe_config
    from edgeskin.train import train as run_train

    options = {k: (None if v == () else v) for k, v in options.items()}  # an unused --teacher is ()
    if resume:
        _resume_alone(resume, recipe, {**options, "config": config_file, "folds": folds})
        result = run_train(resume=resume)
    elif folds is not None:
        from edgeskin.evaluate.kfold import train_folds

        click.echo(f"report: {train_folds(recipe_config(recipe, options, config_file), folds).report}")
        return
    else:
        result = run_train(recipe_config(recipe, options, config_file))
    if result.main:  # under torchrun, rank 0 speaks for the run
        click.echo(f"run: {result.run_dir}")


def _resume_alone(resume: str, recipe: str | None, options: dict) -> None:
    """--resume continues a run with the config saved in it, so any other option would be ignored."""
    given = sorted(f"--{k.replace('_', '-')}" for k, v in options.items() if v is not None)
    if given or recipe:
        given = given + (["--recipe"] if recipe else [])
        raise EdgeskinError(f"--resume continues {resume} with its saved config; drop {' '.join(given)} "
                            "(or start a new run without --resume)")


@cli.command()
@click.option("--recipe", type=click.Choice(sorted(RECIPES)), help="The setup every trial starts from.")
@with_options(*TRAINING.values())
@click.option("--trials", type=int, default=20, show_default=True,
              help="The study ends when this many trials have finished (complete or pruned), over all workers.")
@click.option("--params", default=",".join(TUNE_PARAMS), show_default=True,
              help="Comma-separated parameters to search.")
@click.option("--storage", help="Optuna storage URL shared by every worker, e.g. sqlite:///tune.db or "
              "postgresql://... (default: sqlite in the study folder).")
@click.option("--study", default="tune", show_default=True, help="Study name (a folder under --project).")
@click.option("--pruner", type=click.Choice(PRUNERS), default="median", show_default=True,
              help="Stop a trial whose validation balanced accuracy trails the median of earlier ones.")
@click.option("--heartbeat", type=int, default=60, show_default=True,
              help="Seconds between a trial's heartbeats; one silent for two is failed and retried.")
@click.option("--sampler-seed", type=int, default=0, show_default=True, help="The TPE sampler's seed.")
@click.option("--project", default="runs/tune", show_default=True, help="Parent folder of studies.")
def tune(recipe, trials, params, storage, study, pruner, heartbeat, sampler_seed, project, **options) -> None:
    """Search training options with Optuna (TPE, pruning) on validation; resumable, shareable."""
    from edgeskin.config import TuneConfig
    from edgeskin.tune import tune as run_tune

    train_options = tuple(sorted((k, v) for k, v in options.items() if v is not None and v != ()))
    run_tune(TuneConfig(recipe=recipe, train=train_options, trials=trials,
                        params=tuple(p.strip() for p in params.split(",") if p.strip()), storage=storage,
                        study=study, pruner=pruner, heartbeat_s=heartbeat, seed=sampler_seed, project=project))


@cli.command()
@click.option("--recipe", type=click.Choice(sorted(RECIPES)), help="Named setup, with its chain's generations.")
@with_options(*(option for name, option in TRAINING.items() if name not in CHAIN_SETS))
@click.option("--generations", callback=parse_ints,
              help="Each generation's epochs, e.g. 12,12,18,18 (default: the recipe's chain).")
@click.option("--seeds", callback=parse_ints, default="0,1,2", show_default=True,
              help="One run per seed in every generation; a generation's runs teach the next.")
@click.option("--parallel", type=int, default=1, show_default=True,
              help="Runs of a generation trained side by side (a GPU holds several small ones).")
@click.option("--project", default="runs/chain", show_default=True, help="Parent folder of the chain.")
@click.option("--name", default="chain", show_default=True, help="Chain name (chain2, ... when taken).")
@click.option("--exist-ok", is_flag=True, help="Overwrite the chain NAME if it exists.")
@click.option("--resume", type=click.Path(), help="Go on with a stopped chain: finished runs are kept.")
def chain(recipe, generations, seeds, parallel, project, name, exist_ok, resume, **options) -> None:
    """A distillation chain: one run per seed, then again with the runs before as teachers, per generation."""
    from edgeskin.ensemble.chain import chain_config, run_chain

    overrides = {k: v for k, v in options.items() if v is not None and v != ()}  # an unused --label-map is ()
    if resume:
        _resume_alone(resume, recipe, {**overrides, "generations": generations})
        result = run_chain(resume=resume)
    else:
        result = run_chain(chain_config(recipe, generations, overrides=overrides, seeds=seeds,
                                        parallel=parallel, project=project, name=name, exist_ok=exist_ok))
    last = result.generations[-1]
    click.echo(f"chain: {result.chain_dir}\nbest run of the last generation (by validation): {result.best_run}"
               + (f"\nits runs as one model: {last.ensemble}" if last.ensemble else "")
               + f"\nnext: edgeskin export {result.best_run} --target tflite --precision int8 --int8-from fp32")


@cli.command()
@click.option("--recipe", type=click.Choice(sorted(RECIPES)),
              help="Take data, backbone, input size, colour constancy and split from this training recipe.")
@click.option("--data", multiple=True, callback=parse_data,
              help="The training data (as for `edgeskin train`, repeat for sources); only its train side is read.")
@click.option("--task", type=click.Choice(TASK_CHOICES), help="Decides the split, as in `edgeskin train`.")
@click.option("--label-map", multiple=True, help="SOURCE=LABEL, as in `edgeskin train`.")
@click.option("--holdout-source", help="The source `edgeskin train` will hold out (kept out of pre-training).")
@click.option("--backbone", help="Any timm model name, or edgeskin_cnn_s / _m / _l.")
@click.option("--input-size", callback=parse_size, help="SIZE or HEIGHTxWIDTH, e.g. 128 or 96x128.")
@click.option("--color-constancy", type=click.Choice(CONSTANCY))
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int, help="Images per step (each gives two views); larger gives more negatives.")
@click.option("--lr", type=float)
@click.option("--temperature", type=float, help="NT-Xent temperature (default 0.2).")
@click.option("--crop-scale", type=float, help="Minimum crop area of a view (default 0.25).")
@click.option("--seed", type=int)
@click.option("--val-fraction", type=float)
@click.option("--test-fraction", type=float)
@click.option("--split-manifest", type=click.Path(), help="Reuse a split.csv from an earlier run.")
@click.option("--max-images", type=int)
@click.option("--max-minutes", type=float, help="Time budget; epochs are re-planned after each.")
@click.option("--device", type=click.Choice(DEVICES))
@click.option("--workers", type=int)
@click.option("--project", help="Parent folder of runs (default runs/pretrain).")
@click.option("--name", help="Run name (default exp; exp2, exp3... when taken).")
@click.option("--exist-ok", is_flag=True, default=None, help="Overwrite the run NAME if it exists.")
@click.option("--resume", type=click.Path(), help="Continue a killed run from its last checkpoint.")
def pretrain(resume, recipe, **options) -> None:
    """Self-supervised pre-training (SimCLR) on the training images: no labels, no external weights.
    Writes backbone.pt for `edgeskin train --weights`, and the split.csv that run must use."""
    from edgeskin.recipes import pretrain_config
    from edgeskin.train.pretrain import pretrain as run_pretrain

    options = {k: (None if v == () else v) for k, v in options.items()}  # an unused --label-map is ()
    if resume:
        _resume_alone(resume, recipe, options)
        result = run_pretrain(resume=resume)
    else:
        result = run_pretrain(pretrain_config(recipe, options))
    click.echo(f"weights: {result.weights}  sha256: {result.sha256}")


@cli.command()
@click.argument("run", type=click.Path())
@click.option("--data", help="External dataset (any supported layout); default: the run's own split.")
@click.option("--split", default="test", show_default=True, type=click.Choice(("train", "val", "test")))
@click.option("--bootstrap", default=1000, show_default=True, type=int, help="Bootstrap resamples for 95% CIs.")
@click.option("--device", default="auto", type=click.Choice(DEVICES))
def evaluate(run, data, split, bootstrap, device) -> None:
    """Evaluate RUN: balanced accuracy, per-class metrics, AUC, calibration, with bootstrap CIs."""
    from edgeskin.config import EvalConfig
    from edgeskin.evaluate import evaluate as run_eval

    result = run_eval(EvalConfig(run=run, data=data, split=split, bootstrap=bootstrap, device=device))
    click.echo((result.out_dir / "report.md").read_text())
    click.echo(f"report: {result.out_dir}")


@cli.command()
@click.argument("run", type=click.Path())
@click.option("--device", default="auto", type=click.Choice(DEVICES))
def prior(run, device) -> None:
    """Fit RUN's clinical prior (age, sex, body site) without retraining, as `train --clinical` does."""
    from edgeskin.config import PriorConfig
    from edgeskin.train.clinical import fit_run_prior

    fit_run_prior(PriorConfig(run=run, device=device))
    click.echo(f"card: {Path(run) / 'model_card.json'} (export again to carry the prior)")


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--project", default="runs/train", show_default=True, help="Parent folder of the new run.")
@click.option("--name", default="ensemble", show_default=True, help="Run name (ensemble2, ... when taken).")
@click.option("--exist-ok", is_flag=True, help="Overwrite the run NAME if it exists.")
@click.option("--device", default="auto", type=click.Choice(DEVICES))
def ensemble(runs, **options) -> None:
    """RUNS (trained alike, on one split) as one model: their logits averaged, one exact CAM head.
    Writes a run folder that evaluate, prior, export and benchmark take like a trained run."""
    from edgeskin.config import EnsembleConfig
    from edgeskin.ensemble.build import build_ensemble

    result = build_ensemble(EnsembleConfig(runs=tuple(runs), **options))
    val = result.card.metrics["val"]
    click.echo(f"ensemble of {result.card.members}: {result.run_dir}  validation balanced accuracy "
               f"{val['balanced_accuracy']:.3f}")


@cli.command()
@click.argument("run", type=click.Path())
@click.option("--int8", is_flag=True, help="NNCF post-training quantization, then quantization-aware training.")
@click.option("--prune", type=float, help="Fraction to prune: weights (magnitude) or channels (structured).")
@click.option("--prune-mode", default="magnitude", show_default=True, type=click.Choice(PRUNE_MODES))
@click.option("--epochs", default=3, show_default=True, type=int, help="Fine-tune / QAT epochs per stage.")
@click.option("--lr-scale", default=0.05, show_default=True, type=float, help="QAT LR / training LR.")
@click.option("--prune-lr-scale", default=0.5, show_default=True, type=float,
              help="Pruning fine-tune LR / training LR.")
@click.option("--calib-images", default=300, show_default=True, type=int, help="Training images for PTQ.")
@click.option("--device", default="auto", type=click.Choice(DEVICES))
def compress(run, **options) -> None:
    """Prune and/or INT8-quantize RUN; writes RUN/compress with a table of every stage."""
    from edgeskin.config import CompressConfig

    from edgeskin.compress.pipeline import compress as run_compress

    result = run_compress(CompressConfig(run=run, **options))
    click.echo(f"compressed: {result.out_dir}")


@cli.command()
@click.argument("run", type=click.Path())
@click.option("--target", default="onnx", show_default=True, help="onnx, tflite, or mediapipe (.tflite for "
              "MediaPipe's ImageClassifier: float input, scores only).")
@click.option("--precision", default="fp32", show_default=True,
              help="fp32, fp16 (tflite), or int8.")
@click.option("--int8-from", "int8_from", default="qat", show_default=True,
              help="int8 .tflite source weights: qat (`compress --int8`'s model) or fp32 (the trained weights, "
                   "calibrated by the converter alone).")
@click.option("--allow-degraded", is_flag=True, help="Exit 0 even if validation fails (the file is marked).")
@click.option("--cam-images", default=64, show_default=True, type=int, help="Images for the CAM fidelity check.")
@click.option("--calib-images", default=200, show_default=True, type=int, help="Training images calibrating int8 .tflite.")
@click.option("--min-recall", "min_recall", type=float, default=None,
              help="Operating point: the validation recall the card's positive class (mel) must reach; the "
                   "device adds the fitted logit offset before deciding. Default: plain argmax.")
def export(run, **options) -> None:
    """Export RUN with a CAM output, then validate the file with its real runtime."""
    from edgeskin.config import ExportConfig
    from edgeskin.export import export as run_export

    result = run_export(ExportConfig(run=run, **options))
    click.echo(f"exported: {result.artifact} ({result.status}); card: {result.card_json}")


@cli.command()
@click.argument("run", type=click.Path())
@click.argument("inputs", type=click.Path(), required=False)
@click.option("--method", default="gradcam", show_default=True,
              help="gradcam, gradcam++, xgradcam, layercam, scorecam, eigencam, hirescam, or edge (in-graph CAM).")
@click.option("--target-class", "target", help="Class to explain (default: the predicted one).")
@click.option("--quality", is_flag=True, help="Instead of overlays: score every method and exported CAM head "
              "on the run's split (lesion masks, ROAD, confidence change) -> RUN/explain/quality/report.md.")
@click.option("--methods", default=",".join(("gradcam", "gradcam++", "xgradcam", "layercam", "eigencam", "hirescam",
                                             "edge")), show_default=True, help="With --quality.")
@click.option("--split", default="test", show_default=True, help="With --quality: val or test.")
@click.option("--images", default=200, show_default=True, type=int, help="With --quality: images scored.")
@click.option("--road-images", default=50, show_default=True, type=int, help="With --quality: images for ROAD.")
def explain(run, inputs, method, target, quality, methods, split, images, road_images) -> None:
    """Heatmap overlays explaining RUN's decision on an image or a folder of images (or, with
    --quality, a quality report of the heatmaps over the run's labelled split)."""
    if quality:
        from edgeskin.explain.quality import QualityConfig
        from edgeskin.explain.quality_report import cam_quality_report

        md = cam_quality_report(QualityConfig(run=run, split=split, images=images, road_images=road_images,
                                              methods=tuple(m for m in methods.split(",") if m)))
        click.echo(md.read_text())
        click.echo(f"report: {md}")
        return
    if inputs is None:
        raise EdgeskinError("explain needs an image or a folder of images (or --quality for the report)")
    from edgeskin.explain.pipeline import ExplainConfig
    from edgeskin.explain.pipeline import explain as run_explain

    result = run_explain(ExplainConfig(run=run, inputs=inputs, method=method, target=target))
    for r in result.rows:
        click.echo(f"{r['image']}: {r['predicted']} ({r['probability']:.2f}), map for {r['explained']} -> {r['overlay']}")
    if result.grid:
        click.echo(f"grid: {result.grid}")


@cli.command()
@click.argument("out", type=click.Path())
@click.option("--n", "n_images", default=1400, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--size", default="150x200", show_default=True, callback=parse_size, help="HEIGHTxWIDTH")
def synth(out, n_images, seed, size) -> None:
    """Write the SYNTHETIC dermoscopy-like dataset (HAM10000 layout, with masks) to OUT."""
    from edgeskin.data.synthetic import SyntheticSpec, generate

    if n_images < 1:
        raise EdgeskinError(f"--n {n_images}; use 1 or more images")
    path = generate(out, SyntheticSpec(n_images=n_images, seed=seed, height=size[0], width=size[1]))
    click.echo(f"synthetic dataset: {path}")


@cli.command()
@click.argument("run", type=click.Path())
@click.option("--targets", default="", help="Comma-separated, e.g. torch-fp32,tflite-int8,mediapipe-int8 (default: all exported).")
@click.option("--threads", default="1,4", show_default=True, help="One x86-host device profile per count.")
@click.option("--import", "imports", multiple=True, type=click.Path(),
              help="`edge_runtime benchmark --json` output from another device (repeatable).")
@click.option("--split", default="test", show_default=True)
@click.option("--runs", default=50, show_default=True, type=int)
@click.option("--warmup", default=5, show_default=True, type=int)
@click.option("--no-cold-start", is_flag=True, help="Skip the cold-start process per file.")
def benchmark(run, targets, threads, imports, split, runs, warmup, no_cold_start) -> None:
    """Accuracy vs latency vs memory for every artifact of RUN, per device: RUN/benchmark/report.md."""
    from edgeskin.config import BenchmarkConfig

    try:
        counts = tuple(int(t) for t in threads.split(","))
    except ValueError:
        raise EdgeskinError(f"--threads {threads!r}: use comma-separated integers, e.g. 1,4") from None
    from edgeskin.benchmark import benchmark as run_benchmark

    cfg = BenchmarkConfig(run=run, targets=tuple(t for t in targets.split(",") if t), threads=counts,
                          imports=tuple(imports), split=split, runs=runs, warmup=warmup, cold_start=not no_cold_start)
    result = run_benchmark(cfg)
    click.echo("\n".join(ln for ln in result.markdown.read_text().splitlines() if ln.startswith("|")))
    click.echo(f"report: {result.markdown} (+ report.json, {', '.join(p.name for p in result.plots)})")


@cli.command()
@click.option("--project", default="runs", show_default=True)
@click.option("--epochs", type=int, help="Override the demo recipe's epochs.")
@click.option("--device", default="auto", type=click.Choice(DEVICES))
def demo(project, epochs, device) -> None:
    """The main job on the embedded synthetic dataset: train, evaluate, compress to INT8."""
    from edgeskin.pipeline import DemoConfig, run_demo

    run_demo(DemoConfig(project=project, epochs=epochs, device=device))


@cli.command()
def recipes() -> None:
    """List the named training recipes (and the generations of a recipe's `edgeskin chain`)."""
    for name, fn in sorted(RECIPES.items()):
        chain = f"  [chain: {','.join(map(str, CHAINS[name]))} epochs]" if name in CHAINS else ""
        click.echo(f"{name:20s} {(fn.__doc__ or '').strip().splitlines()[0]}{chain}")


def main(argv: list[str] | None = None) -> None:
    """The console script: every error a user can cause ends as one `error:` line and exit code 2
    (an unexpected one as one line and exit 1), with the traceback only under --debug."""
    try:
        cli.main(args=argv, prog_name="edgeskin", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:
        if _DEBUG[0]:
            raise
        code, message = one_line(exc)
        click.echo(f"error: {message}", err=True)
        sys.exit(code)
