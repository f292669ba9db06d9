"""`edgeskin chain`: generations of runs, each taught by all of the one before, on one split; a
stopped chain goes on where it stopped; bad options fail in one line before a folder exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TINY, load_script, one_line_error, run_cli
from edgeskin.card import ModelCard
from edgeskin.config import ChainConfig, TrainConfig
from edgeskin.recipes import CHAINS
from edgeskin.errors import EdgeskinError
from edgeskin.fileio import sha256_file
from edgeskin.ensemble.chain import chain_config

# The tiny run of conftest.TINY as `edgeskin chain` options.
TINY_ARGS = ["--recipe", "demo", "--backbone", TINY["backbone"], "--input-size", "32x48",
             "--batch-size", str(TINY["batch_size"]), "--lr", str(TINY["lr"]), "--patience", str(TINY["patience"]),
             "--device", "cpu"]


@pytest.fixture(scope="module")
def chain_dir(clinical_model, tmp_path_factory) -> Path:
    """Two generations (1 then 2 epochs) of two seeds each on 200 of the synthetic set's 240 images,
    with the patients' context (conftest.clinical_model's CSV) and a clinical prior for every run."""
    project = tmp_path_factory.mktemp("chain")
    proc = run_cli("chain", *TINY_ARGS, "--data", clinical_model["manifest"], "--clinical", "--generations", "1,2",
                   "--seeds", "0,1", "--max-images", "200", "--project", project, "--name", "c", check=True)
    assert f"best run of the last generation (by validation): {project / 'c'}" in proc.stdout
    return project / "c"


def test_each_generation_is_taught_by_every_run_of_the_one_before(chain_dir):
    summary = json.loads((chain_dir / "chain.json").read_text())
    gens = summary["generations"]
    assert [g["epochs"] for g in gens] == [1, 2]
    assert [g["runs"] for g in gens] == [[str(chain_dir / f"g{i}-s{s}") for s in (0, 1)] for i in (1, 2)]
    for gen, teachers in zip(gens, ((), tuple(gens[0]["runs"]))):
        for run, seed, score in zip(gen["runs"], (0, 1), gen["val_balanced_accuracy"]):
            cfg = TrainConfig.load(Path(run) / "config.json")
            assert (cfg.teacher, cfg.seed, cfg.epochs, cfg.recipe) == (teachers, seed, gen["epochs"], "demo")
            assert cfg.input_size == (32, 48) and cfg.backbone == TINY["backbone"]
            # One split for every run and teacher: a teacher never saw a student's val or test images.
            assert (Path(run) / "split.csv").read_bytes() == (chain_dir / "split.csv").read_bytes()
            # --max-images: one subset (the split's) for every seed, not each seed's own.
            assert cfg.max_images is None
            assert score == ModelCard.load(Path(run)).metrics["val"]["balanced_accuracy"]
            assert cfg.clinical and ModelCard.load(Path(run)).clinical is not None
        # The generation as one model, what `edgeskin ensemble` writes, scored on validation, with a
        # prior fitted on its own validation logits (`edgeskin prior`), ready to export.
        card = ModelCard.load(Path(gen["ensemble"]))
        assert [m["run"] for m in card.ensemble["runs"]] == gen["runs"]
        assert card.metrics["val"]["balanced_accuracy"] == gen["ensemble_val_balanced_accuracy"]
        assert card.clinical is not None and f"{card.clinical['scale']:g}" in card.clinical["val_balanced_log_loss"]
        assert card.clinical["val_balanced_log_loss"] != ModelCard.load(Path(gen["runs"][0])).clinical[
            "val_balanced_log_loss"]  # the ensemble's own validation logits, not a member's
        assert gen["ensemble_val_with_prior"] == card.clinical["val_balanced_accuracy"][f"{card.clinical['scale']:g}"]
    listed = sum(1 for _ in open(chain_dir / "split.csv")) - 1  # whole lesions: about 200 of 240
    counts = ModelCard.load(Path(gens[-1]["runs"][-1])).split.counts
    assert 195 <= listed <= 210 and listed == sum(sum(c.values()) for c in counts.values())


def test_a_stopped_chain_goes_on_without_training_its_finished_runs_again(chain_dir):
    runs = sorted(chain_dir.glob("g?-s?")) + [chain_dir / "g1-ensemble"]  # g1's runs as one are kept too
    stamps = {r: (r / "best.pt").stat().st_mtime_ns for r in runs}
    killed = chain_dir / "g2-s1"
    sha = sha256_file(killed / "best.pt")
    (killed / "model_card.json").unlink()  # as if killed after its last epoch's checkpoint
    proc = run_cli("chain", "--resume", chain_dir, check=True)
    assert "edgeskin train: runs" not in proc.stdout.replace(str(killed), "")  # no other run trained
    assert {r: (r / "best.pt").stat().st_mtime_ns for r in runs if r != killed} == \
        {r: t for r, t in stamps.items() if r != killed}
    assert ModelCard.load(killed).weights["sha256"] == sha  # resumed to the same weights
    assert "generation  epochs" in proc.stdout


def test_resume_refuses_options_it_would_ignore(tmp_path):
    proc = run_cli("chain", "--resume", tmp_path / "c", "--generations", "1", "--lr", "0.1")
    assert "drop --generations --lr" in one_line_error(proc)


@pytest.mark.parametrize("args, needle", [
    (["--recipe", "demo"], "--generations"),  # a recipe without a chain of its own
    (["--recipe", "demo", "--generations", "2,0"], "--generations [2, 0]"),
    (["--recipe", "demo", "--generations", "2", "--seeds", "0,0"], "--seeds [0, 0]"),
    (["--recipe", "demo", "--generations", "2", "--lr", "-1"], "--lr -1.0"),
    (["--recipe", "demo", "--generations", "2", "--data", "/no/such/dir"], "/no/such/dir"),
    # a manifest picks the images: --max-images next to it would be ignored, so it is refused
    (["--recipe", "demo", "--generations", "2", "--split-manifest", "split.csv", "--max-images", "50"],
     "leave out --max-images"),
])
def test_bad_options_fail_in_one_line_before_a_folder_exists(tmp_path, args, needle):
    proc = run_cli("chain", *args, "--project", tmp_path / "chains")
    assert needle in one_line_error(proc)
    assert not (tmp_path / "chains").exists()


def test_a_recipe_without_a_chain_names_those_that_have_one():
    with pytest.raises(EdgeskinError, match="ham-edge-robust \\(12,12,18,18\\)"):
        chain_config("demo", None)
    with pytest.raises(EdgeskinError, match="the chain sets"):
        ChainConfig(generations=(1,), overrides={"epochs": 3})
    assert chain_config("ham-edge-robust", None).generations == CHAINS["ham-edge-robust"]
    assert chain_config("ham-edge-robust", (6, 6)).generations == (6, 6)


def test_generations_that_are_not_numbers_are_refused():
    proc = run_cli("chain", "--recipe", "demo", "--generations", "twelve")
    assert proc.returncode == 2 and "comma-separated whole numbers" in proc.stderr


def test_a_manifest_from_another_seeds_subset_names_the_fix(synth_root, tmp_path):
    """What the chain avoids by hand: `train --max-images` draws a subset per seed, so seed 1 with
    seed 0's manifest is refused, naming the fix, and the fix (no --max-images) trains on it."""
    from dataclasses import replace

    from edgeskin.train import train

    base = TrainConfig(data=str(synth_root), epochs=1, max_images=200, project=str(tmp_path), **TINY)
    first = train(replace(base, name="a")).run_dir
    again = replace(base, name="b", seed=1, split_manifest=str(first / "split.csv"))
    with pytest.raises(EdgeskinError, match="leave out --max-images 200: the manifest already picks the images"):
        train(again)
    assert not (tmp_path / "b").exists()
    second = train(replace(again, max_images=None)).run_dir
    assert ModelCard.load(second).split.counts == ModelCard.load(first).split.counts


def test_recipes_list_shows_a_recipes_chain():
    line = next(ln for ln in run_cli("recipes", check=True).stdout.splitlines() if ln.startswith("ham-edge-robust"))
    assert line.endswith("[chain: 12,12,18,18 epochs]")


def test_the_winner_benchmark_scores_a_chains_last_generation(chain_dir, tmp_path, capsys):
    """benchmarks/ham10000_winner.py --chain: the last generation's runs in seed order, or with
    --ensemble the one model the chain built from them; a chain still training says so."""
    import shutil

    bench = load_script("ham10000_winner", "ham10000_winner_chain")
    gens = json.loads((chain_dir / "chain.json").read_text())["generations"]
    picked = bench.chain_runs(chain_dir, ensemble=False)
    assert picked.runs == {"0": Path(gens[1]["runs"][0]), "1": Path(gens[1]["runs"][1])}
    assert (picked.base, picked.name) == ("demo", "c, generation 2")
    one = bench.chain_runs(chain_dir, ensemble=True)
    assert one.runs == {"seeds 0, 1 as one": Path(gens[1]["ensemble"])} and one.members == list(picked.runs.values())
    assert "generation" not in capsys.readouterr().err
    stopped = tmp_path / "stopped"
    shutil.copytree(chain_dir, stopped, ignore=shutil.ignore_patterns("g*"))
    summary = json.loads((stopped / "chain.json").read_text())
    (stopped / "chain.json").write_text(json.dumps({**summary, "generations": summary["generations"][:1]}))
    assert bench.chain_runs(stopped, ensemble=False).name == "stopped, generation 1"
    assert "generation 1 of 2 is the last one done" in capsys.readouterr().err
    assert bench.chain_runs(tmp_path / "none", ensemble=False) is None
    assert "no chain.json there" in capsys.readouterr().err
