"""The accuracy ablation on real HAM10000: one row per lever, seeds 0-2, one lesion-grouped split.

    python benchmarks/ham10000_ablation.py [--rows base,balanced-softmax,...] [--seeds 0,1,2]
                                           [--epochs 6] [--out runs/ablation/ham10000]
                                           [--why-not TEXT] [--note TEXT ...] [--render-only] [--merge]
                                           [--parallel 3 --workers 4]   (on a GPU: seeds side by side)
                                           [--train-only]   (train, score nothing: score where the runs are copied)

Every row starts from the `ham-edge-int8` recipe (the int8-exact plain CNN), at 96x128 (the
200x150 source's aspect ratio) and a fixed number of epochs, so rows differ only in their lever
and cost the same unless the lever is the cost (resolution, length, a teacher). After the first
eight rows the search is greedy: each `sog+` row adds one lever to the best row so far, or,
for the last rows, to the 6-epoch shades-of-gray row as a cheap screen. Finished runs
(and their scores) are reused,
so the script can be stopped and re-run, and rows can be added later. Results are copied to
benchmarks/results/ham10000_ablation.{json,md}; with --merge, the rows run now replace theirs in
that committed table and its other rows are kept (their runs need not be on this machine).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from edgeskin.benchmark.ablation import AblationConfig, Lever, run_ablation, shared_split, train_rows
from edgeskin.benchmark.ablation_report import merge_tables, render_markdown
from edgeskin.config import PretrainConfig
from edgeskin.recipes import recipe_config
from edgeskin.errors import EdgeskinError
from edgeskin.fileio import sha256_file, write_json, write_text
from edgeskin.train.checkpoint import LAST
from edgeskin.train.pretrain import pretrain

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "HAM10000"
BSM = {"loss": "balanced_softmax"}
SOG = {**BSM, "color_constancy": "shades_of_gray"}
NOT_RUN = "Not run in this table:"
# Under --out; written by `edgeskin pretrain` when a row first needs it (with_pretrained), about
# 100 s an epoch on 2 CPU cores at 96x128.
SIMCLR_EPOCHS: dict[str, int] = {}  # each pre-trained file a row names -> its SimCLR epochs


def simclr(epochs: int) -> dict[str, str]:
    """A row's `weights` override: SimCLR run for `epochs`, the length stated once (name and run)."""
    rel = f"ssl/simclr-{epochs}/backbone.pt"
    SIMCLR_EPOCHS[rel] = epochs
    return {"weights": rel}


SIMCLR, SIMCLR_50 = simclr(25), simclr(50)
# The GPU rows at 144x192: a time budget bounds each run to one 10-minute device call.
RES_144 = {**SOG, "input_size": (144, 192), "epochs": 60, "max_minutes": 7.0}

# Row order is run order: the cheap, likely-large levers first, so a cut-short run still answers.
LEVERS = (
    Lever("base", "reference"),
    Lever("logit-adjust", "objective", post="logit_adjust", reuse="base"),
    Lever("balanced-softmax", "objective", BSM),
    Lever("bsm+logit-adjust", "objective", post="logit_adjust", reuse="balanced-softmax"),
    Lever("tta-flips", "inference", post="tta", reuse="balanced-softmax"),
    Lever("ema", "training", {**BSM, "ema_decay": 0.998}),
    Lever("mixup-cutmix", "training", {**BSM, "mixup": 0.5}),
    Lever("shades-of-gray", "robustness", {**BSM, "color_constancy": "shades_of_gray"}),
    # Greedy from here on: each row adds one lever to the best row so far (shades-of-gray).
    Lever("sog+2x-epochs", "training length", {**SOG, "epochs": 12}),
    # Each seed's student learns from the ensemble of all three sog+2x-epochs runs (same split).
    Lever("sog+2x+distill", "distillation", {**SOG, "epochs": 12}, teacher="sog+2x-epochs"),
    # Born-again: half as long again, taught by the distilled students (a better, same-size teacher).
    Lever("sog+3x+distill", "distillation", {**SOG, "epochs": 18}, teacher="sog+2x+distill"),
    # The export's --min-recall 0.7: one melanoma logit offset fitted on validation (no training).
    Lever("sog+3x+distill+mel-op", "operating point", post="min_recall=0.7", reuse="sog+3x+distill"),
    # Screened on the 6-epoch shades-of-gray row (cheap); a lever that wins here goes into the chain.
    Lever("sog+res-120x160", "resolution", {**SOG, "input_size": (120, 160)}),
    Lever("sog+strong-aug", "training", {**SOG, "augment": "strong"}),
    Lever("sog+inverse-freq", "objective", {**SOG, "balance": "none"}),
    # The same plain CNN at half the width: a quarter of the MACs, for a smaller latency budget.
    Lever("sog+cnn-s", "architecture", {**SOG, "backbone": "edgeskin_cnn_s"}),
    # ...given the training time cnn_m takes for 6 epochs (cnn_s trains about twice as fast).
    Lever("sog+cnn-s+2x-epochs", "architecture", {**SOG, "backbone": "edgeskin_cnn_s", "epochs": 12}),
    # Long runs, trained on a GPU (AMP, seeds side by side: --parallel 3 --workers 4, about 6 minutes
    # for all three on an H100, loader-bound); on 2 CPU cores about 50 minutes a run. Length first,
    # then the distillation that won at 12 epochs.
    Lever("sog+10x-epochs", "training length", {**SOG, "epochs": 60}),
    Lever("sog+10x+distill", "distillation", {**SOG, "epochs": 60}, teacher="sog+10x-epochs"),
    Lever("sog+10x+distill+mel-op", "operating point", post="min_recall=0.7", reuse="sog+10x+distill"),
    # The long runs over-fit (validation peaked mid-run): does strong augmentation, which hurt at 6
    # epochs, pay off once training is longer? Screened at 12 epochs against sog+2x-epochs.
    Lever("sog+2x+strong-aug", "training", {**SOG, "epochs": 12, "augment": "strong"}),
    # The other imbalance objective, screened at 6 epochs against shades-of-gray
    # (balanced softmax): focal loss on top of the same 1/sqrt-frequency sampler.
    Lever("sog+focal", "objective", {**SOG, "loss": "focal"}),
    # The 4x cheaper network taught by the cnn_m students: does distillation close the gap at a
    # quarter of the MACs (for a Raspberry Pi-class latency budget)? Against sog+cnn-s+2x-epochs.
    Lever("sog+cnn-s+2x+distill", "distillation", {**SOG, "backbone": "edgeskin_cnn_s", "epochs": 12},
          teacher="sog+2x+distill"),
    Lever("sog+cnn-s+2x+distill+mel-op", "operating point", post="min_recall=0.7", reuse="sog+cnn-s+2x+distill"),
    # The patient's age, sex and body site (HAM10000 records them) as a prior on the image logits:
    # a logistic model fitted on the training split's context, its weight picked on validation
    # (`edgeskin train --clinical`; the device adds it, numpy only). No training of its own.
    Lever("sog+2x+clinical", "clinical context", post="clinical", reuse="sog+2x-epochs"),
    # As deployed: the prior, then the export's --min-recall 0.7 fitted on the logits with it.
    Lever("sog+2x+clinical+mel-op", "clinical context", post="clinical+min_recall=0.7", reuse="sog+2x-epochs"),
    # The same file when the device is sent no context (the fields left empty): the image logits
    # alone, decided by thresholds that were fitted with the prior.
    Lever("sog+2x+clinical+mel-op-unrecorded", "clinical context", post="clinical_unrecorded+min_recall=0.7",
          reuse="sog+2x-epochs"),
    # On the distilled students (a stronger image model: does the context still add as much?).
    Lever("sog+2x+distill+clinical", "clinical context", post="clinical", reuse="sog+2x+distill"),
    Lever("sog+2x+distill+clinical+mel-op", "clinical context", post="clinical+min_recall=0.7",
          reuse="sog+2x+distill"),
    # On the born-again students (the best image model): the winner's chain with the context.
    Lever("sog+3x+distill+clinical", "clinical context", post="clinical", reuse="sog+3x+distill"),
    Lever("sog+3x+distill+clinical+mel-op", "clinical context", post="clinical+min_recall=0.7",
          reuse="sog+3x+distill"),
    # The "decision thresholds tuned on validation only", for every class at once: one
    # logit offset per class searched on validation balanced accuracy (mel-op fits only melanoma's).
    Lever("sog+3x+distill+class-thresholds", "operating point", post="class_thresholds", reuse="sog+3x+distill"),
    # A third generation at the same length, taught by the born-again students: how much does a
    # better teacher alone still add (length held at 18 epochs)?
    Lever("sog+3x+distill-g3", "distillation", {**SOG, "epochs": 18}, teacher="sog+3x+distill"),
    Lever("sog+3x+distill-g3+mel-op", "operating point", post="min_recall=0.7", reuse="sog+3x+distill-g3"),
    Lever("sog+3x+distill-g3+clinical", "clinical context", post="clinical", reuse="sog+3x+distill-g3"),
    Lever("sog+3x+distill-g3+clinical+mel-op", "clinical context", post="clinical+min_recall=0.7",
          reuse="sog+3x+distill-g3"),
    # The third generation's students score only 0.75 on their own un-augmented training images
    # (seed 0), which looked like under-fitting: a 1.5x wider student, taught by them at the same
    # length. It does not gain: a distilled student copies its teachers rather than fitting the
    # labels, and their ensemble scores no better than they do (the row's teacher figure).
    Lever("sog+cnn-l+distill-g4", "architecture", {**SOG, "epochs": 18, "backbone": "edgeskin_cnn_l"},
          teacher="sog+3x+distill-g3"),
    Lever("sog+cnn-l+distill-g4+mel-op", "operating point", post="min_recall=0.7", reuse="sog+cnn-l+distill-g4"),
    Lever("sog+cnn-l+distill-g4+clinical", "clinical context", post="clinical", reuse="sog+cnn-l+distill-g4"),
    Lever("sog+cnn-l+distill-g4+clinical+mel-op", "clinical context", post="clinical+min_recall=0.7",
          reuse="sog+cnn-l+distill-g4"),
    # Lesion masks as a training signal (edgeskin.train.guide): the share of the CAM outside the
    # lesion is penalised, so the heatmap a dermatologist reads sits on the lesion. Does looking at
    # the lesion, not the skin, rulers and vignette around it, also change accuracy or shift
    # robustness? Screened at 6 epochs against shades-of-gray.
    Lever("sog+mask-guide", "explanation", {**SOG, "mask_guidance": 1.0}),
    # It gained +3.3 pp here (0.606; the reference seeds were trained on another CPU) and put 0.68
    # of the heatmap on the lesion, against 0.41-0.44 for every unguided row. So, in the chain: a
    # fourth generation at the third's length and teacher, guided. Level with the third (0.681
    # against 0.680; 0.705 against 0.716 with prior and operating point), heatmap 0.64 on the lesion.
    Lever("sog+3x+distill-g4+mask-guide", "explanation", {**SOG, "epochs": 18, "mask_guidance": 1.0},
          teacher="sog+3x+distill-g3"),
    Lever("sog+3x+distill-g4+mask-guide+clinical+mel-op", "clinical context", post="clinical+min_recall=0.7",
          reuse="sog+3x+distill-g4+mask-guide"),
    # The guidance weight, screened at 6 epochs (1.0 was the only one tried): a third of it, and three times.
    Lever("sog+mask-guide-0.3", "explanation", {**SOG, "mask_guidance": 0.3}),
    Lever("sog+mask-guide-3", "explanation", {**SOG, "mask_guidance": 3.0}),
    # The first generation of a guided chain: does the screen's gain hold at the length the chain
    # starts from (sog+2x-epochs, 12 epochs, unguided teachers nowhere in it)?
    Lever("sog+2x-epochs+mask-guide", "explanation", {**SOG, "epochs": 12, "mask_guidance": 1.0}),
    # It held (+1.5 pp), so the chain's second step, guided and taught by guided teachers.
    Lever("sog+2x+distill+mask-guide", "explanation", {**SOG, "epochs": 12, "mask_guidance": 1.0},
          teacher="sog+2x-epochs+mask-guide"),
    Lever("sog+2x+distill+mask-guide+clinical+mel-op", "clinical context", post="clinical+min_recall=0.7",
          reuse="sog+2x+distill+mask-guide"),
    # +2.1 pp over the unguided second step, every seed up: so the born-again third step, guided,
    # 18 epochs, taught by the guided second step (the unguided chain's sog+3x+distill, guided).
    Lever("sog+3x+distill+mask-guide", "explanation", {**SOG, "epochs": 18, "mask_guidance": 1.0},
          teacher="sog+2x+distill+mask-guide"),
    Lever("sog+3x+distill+mask-guide+clinical+mel-op", "clinical context", post="clinical+min_recall=0.7",
          reuse="sog+3x+distill+mask-guide"),
    # It gained +1.4 pp (0.689, every seed up), 0.699 with prior and operating point. So the fourth
    # step, as the unguided chain's sog+3x+distill-g3: same length, taught by the guided third step.
    # Level with the third (0.688; 0.699 with prior and operating point): the guided chain converged.
    Lever("sog+3x+distill-g3+mask-guide", "explanation", {**SOG, "epochs": 18, "mask_guidance": 1.0},
          teacher="sog+3x+distill+mask-guide"),
    Lever("sog+3x+distill-g3+mask-guide+clinical+mel-op", "clinical context", post="clinical+min_recall=0.7",
          reuse="sog+3x+distill-g3+mask-guide"),
    # Self-supervised pre-training on the training images themselves, for clinics that cannot use
    # ImageNet weights: `edgeskin pretrain` (SimCLR, lightly's loss) on the shared split's train
    # side, once, its weights shared by the three seeds as a downloaded checkpoint would be; then
    # the 6-epoch screen. Against shades-of-gray (random init).
    Lever("sog+simclr", "pre-training", {**SOG, **SIMCLR}),
    # The same weights at the length the distillation chain starts from (against sog+2x-epochs).
    Lever("sog+2x+simclr", "pre-training", {**SOG, **SIMCLR, "epochs": 12}),
    # +2.7 pp over sog+2x-epochs (0.659, the best first generation): so the chain's second step from
    # the same weights, taught by those runs (against sog+2x+distill).
    Lever("sog+2x+distill+simclr", "pre-training", {**SOG, **SIMCLR, "epochs": 12}, teacher="sog+2x+simclr"),
    # Those students stayed below their teachers' ensemble (0.658 against 0.663), as the 144x192
    # students did (0.667 against 0.703): is the labels' half of the loss what holds them back?
    # The same step with the teachers' term weighted 0.9 instead of 0.5 (--distill-alpha). Level
    # (0.660 against 0.658): the weight is not what holds them back.
    Lever("sog+2x+distill+simclr+kd-0.9", "distillation", {**SOG, **SIMCLR, "epochs": 12, "distill_alpha": 0.9},
          teacher="sog+2x+simclr"),
    # The other knob of the teachers' term: the softmax temperature, 4 instead of 2 (--distill-
    # temperature; Hinton et al. 2015), which hands the student more of the teachers' ranking of the
    # wrong classes. Same teachers, weight 0.5 and length (against sog+2x+distill+simclr). 0.665
    # against 0.658, within the CI: the students reach their teachers' ensemble (0.663) on average
    # and vary less by seed, but the temperature is not a lever that moves the table.
    Lever("sog+2x+distill+simclr+kd-t4", "distillation",
          {**SOG, **SIMCLR, "epochs": 12, "distill_temperature": 4.0}, teacher="sog+2x+simclr"),
    # The SimCLR chain's third step, as the unguided chain's sog+3x+distill (18 epochs, taught by the
    # second step), which gained +2.5 pp there: does the pre-trained start compound by then?
    # Taught by the temperature-4 students, at temperature 4, from the same SimCLR weights.
    # Level with the second step (0.667 against 0.665; 0.675 with prior and operating point) and
    # under the unguided third step (0.675; 0.688): from the SimCLR start the chain stops gaining.
    Lever("sog+3x+distill+simclr+kd-t4", "pre-training",
          {**SOG, **SIMCLR, "epochs": 18, "distill_temperature": 4.0}, teacher="sog+2x+distill+simclr+kd-t4"),
    Lever("sog+3x+distill+simclr+kd-t4+clinical+mel-op", "clinical context", post="clinical+min_recall=0.7",
          reuse="sog+3x+distill+simclr+kd-t4"),
    # The two first-generation levers together: the same weights, fine-tuned with mask guidance
    # (against sog+2x+simclr and sog+2x-epochs+mask-guide). Do where to look and what the features
    # already know add up?
    Lever("sog+2x+simclr+mask-guide", "pre-training", {**SOG, **SIMCLR, "epochs": 12, "mask_guidance": 1.0}),
    Lever("sog+2x+simclr+mask-guide+clinical+mel-op", "clinical context", post="clinical+min_recall=0.7",
          reuse="sog+2x+simclr+mask-guide"),
    # SimCLR's loss was still falling at 25 epochs (and contrastive methods usually run hundreds):
    # the same fine-tuning from weights pre-trained twice as long (against sog+2x+simclr).
    Lever("sog+2x+simclr-50", "pre-training", {**SOG, **SIMCLR_50, "epochs": 12}),
    # Input resolution at length, on a lent H100 (--parallel 3 --workers 5 --train-only, then scored
    # here): 144x192 is 2.25x the pixels and MACs of 96x128, nearly the 150x200 source. At 6 epochs
    # 120x160 lost to 96x128 (under-trained); trained at length, as sog+10x-epochs was, does it win?
    # 60 epochs or 7 minutes a run, whichever ends first (the cosine schedule is fitted to the time;
    # the time ended first, at 53-56 epochs). Then two distillation steps at the same size and length.
    # Each run scores higher than at 96x128 (0.666 against 0.651) and melanoma AUC rises (0.86-0.89),
    # but the chain ends at 0.686 with prior and operating point, below the 96x128 CPU chain's 0.716.
    Lever("sog+10x+res-144x192", "resolution", RES_144),
    # The first runs with the prior and operating point: a single run of this row, and its three
    # seeds as one model (the best teacher ensemble in the table), which a student did not learn.
    Lever("sog+10x+res-144x192+clinical+mel-op", "clinical context", post="clinical+min_recall=0.7",
          reuse="sog+10x+res-144x192"),
    Lever("sog+10x+res-144x192+distill", "distillation", RES_144, teacher="sog+10x+res-144x192"),
    Lever("sog+10x+res-144x192+distill-g3", "distillation", RES_144, teacher="sog+10x+res-144x192+distill"),
    Lever("sog+10x+res-144x192+distill+mel-op", "operating point", post="min_recall=0.7",
          reuse="sog+10x+res-144x192+distill"),
    Lever("sog+10x+res-144x192+distill+clinical+mel-op", "clinical context", post="clinical+min_recall=0.7",
          reuse="sog+10x+res-144x192+distill"),
    Lever("sog+10x+res-144x192+distill-g3+clinical+mel-op", "clinical context", post="clinical+min_recall=0.7",
          reuse="sog+10x+res-144x192+distill-g3"),
    # Across resolutions: the edge-size student (96x128, sog+3x+distill's length) taught by the
    # 144x192 first runs, the best teacher ensemble in the table (0.703), instead of by the 96x128
    # sog+2x+distill students (0.656). The teachers see the student's batch resized up to 144x192
    # (edgeskin.train.distill), where their ensemble still scores 0.685 on validation (0.703 at
    # their own size). Trained on the CPU: the teachers' forward pass is 2.25x the pixels.
    # 0.684 alone (+0.9 pp over sog+3x+distill, +0.4 over the third generation), but the prior adds
    # with the operating point only 0.9 pp: 0.693, under the winner's 0.716. 40 minutes a run.
    Lever("sog+3x+distill-hr", "distillation", {**SOG, "epochs": 18}, teacher="sog+10x+res-144x192"),
    Lever("sog+3x+distill-hr+mel-op", "operating point", post="min_recall=0.7", reuse="sog+3x+distill-hr"),
    Lever("sog+3x+distill-hr+clinical+mel-op", "clinical context", post="clinical+min_recall=0.7",
          reuse="sog+3x+distill-hr"),
    # The born-again step after it: the same 96x128 student taught by the three sog+3x+distill-hr
    # runs (0.698 as one model), as sog+3x+distill-g3 was by sog+3x+distill. The teachers are edge
    # size, so a run costs what a g3 run does, not the 144x192 teachers' 40 minutes.
    # 0.677 alone, 0.7 pp under its teachers' row: the step does not pass a 0.698 teacher ensemble.
    # The prior adds more here (2.8 pp with the operating point): 0.705, still under the winner's 0.716.
    Lever("sog+3x+distill-hr-g2", "distillation", {**SOG, "epochs": 18}, teacher="sog+3x+distill-hr"),
    Lever("sog+3x+distill-hr-g2+mel-op", "operating point", post="min_recall=0.7", reuse="sog+3x+distill-hr-g2"),
    Lever("sog+3x+distill-hr-g2+clinical", "clinical context", post="clinical", reuse="sog+3x+distill-hr-g2"),
    Lever("sog+3x+distill-hr-g2+clinical+mel-op", "clinical context", post="clinical+min_recall=0.7",
          reuse="sog+3x+distill-hr-g2"),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--rows", help="comma-separated row names (default: all, in order)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--out", default="runs/ablation/ham10000")
    ap.add_argument("--why-not", default="", help="why the rows left out by --rows were not run (for the table)")
    ap.add_argument("--note", action="append", default=[], help="a line printed under the table (repeatable)")
    ap.add_argument("--parallel", type=int, default=1, help="seeds of a row trained at once (e.g. 3 on one GPU)")
    ap.add_argument("--workers", type=int, default=0, help="loader processes per run (a GPU run needs ~4)")
    only = ap.add_mutually_exclusive_group()  # one trains and scores nothing, the other renders only
    only.add_argument("--train-only", action="store_true",
                      help="train the rows' runs and score nothing (e.g. on a lent GPU without the lesion masks); "
                           "a later run without it, where the runs are copied, scores them")
    only.add_argument("--render-only", action="store_true",
                      help="re-render OUT/ablation.json (rows and notes) and copy it; train and score nothing")
    ap.add_argument("--merge", action="store_true",
                    help="keep the committed table's rows that --rows does not run (same split and seeds)")
    args = ap.parse_args()
    if args.parallel < 1:
        print(f"--parallel {args.parallel}: use 1 (one run at a time) or more", file=sys.stderr)
        return 2
    levers = LEVERS
    if args.rows:
        wanted = args.rows.split(",")
        unknown = sorted(set(wanted) - {lv.name for lv in LEVERS})
        if unknown:
            print(f"unknown rows {unknown}; choose from {[lv.name for lv in LEVERS]}", file=sys.stderr)
            return 2
        levers = tuple(lv for lv in LEVERS if lv.name in wanted)
    committed = HERE / "results" / "ham10000_ablation.json"
    kept = json.loads(committed.read_text()) if args.merge and committed.is_file() else None
    left_out = [lv.name for lv in LEVERS if lv not in levers and not (kept and _row(kept, lv.name))]
    notes = (f"{NOT_RUN} {', '.join(left_out)}. {args.why_not}".strip(),) if left_out else ()
    notes += tuple(args.note)
    base = {"input_size": (96, 128), "epochs": args.epochs, "patience": 99}
    cfg = AblationConfig(data=args.data, recipe="ham-edge-int8", levers=levers,
                         seeds=tuple(int(s) for s in args.seeds.split(",")), base=base, out=args.out,
                         notes=notes, parallel=args.parallel, workers=args.workers)
    if args.render_only:
        path = Path(args.out) / "ablation.json"
        if not path.is_file():
            print(f"--render-only: {path} does not exist; run the ablation first (without --render-only)",
                  file=sys.stderr)
            return 2
        table = json.loads(path.read_text())
        table["rows"] = [r for r in table["rows"] if r["name"] in {lv.name for lv in levers}]
        table["notes"] = list(notes)
        write_json(path, table)
        write_text(path.with_suffix(".md"), render_markdown(table))
    else:
        try:
            ready = replace(cfg, levers=tuple(with_pretrained(lv, cfg) for lv in cfg.levers))
            if args.train_only:
                print("trained (not scored):", *map(str, train_rows(ready)), sep="\n  ")
                return 0
            run_ablation(ready)
        except EdgeskinError as e:  # e.g. --rows without a reused or teacher row: one line, not a traceback
            print(f"{e}{'; name it in --rows' if args.rows else ''}", file=sys.stderr)
            return 2
    if kept is not None:
        merge_into(Path(args.out) / "ablation.json", kept)
    results = HERE / "results"
    for ext in ("json", "md"):
        shutil.copyfile(Path(args.out) / f"ablation.{ext}", results / f"ham10000_ablation.{ext}")
    print(f"wrote {results / 'ham10000_ablation.md'}")
    return 0


def with_pretrained(lever: Lever, cfg: AblationConfig) -> Lever:
    """A row whose `weights` names a file under --out: pre-train it on the shared split's train side
    (SimCLR, with the row's backbone, input size and colour constancy) if it is not there yet, or
    resume the killed pre-training; then pin it by its SHA-256 as `edgeskin train --weights` requires."""
    rel = lever.overrides.get("weights")
    if rel is None or "weights_sha256" in lever.overrides:
        return lever
    path = Path(cfg.out) / rel
    if not path.is_file() and (path.parent / LAST).is_file():
        pretrain(resume=path.parent)
    elif not path.is_file():
        row = recipe_config(cfg.recipe, {**cfg.base, **lever.overrides, "weights": None, "data": cfg.data})
        shared = {k: getattr(row, k) for k in ("data", "task", "backbone", "input_size", "color_constancy")}
        pretrain(PretrainConfig(**shared, split_manifest=str(shared_split(cfg)), epochs=SIMCLR_EPOCHS[rel],
                                project=str(path.parent.parent), name=path.parent.name, exist_ok=True))
    return replace(lever, overrides={**lever.overrides, "weights": str(path), "weights_sha256": sha256_file(path)})


def _row(table: dict, name: str) -> dict | None:
    return next((r for r in table["rows"] if r["name"] == name), None)


def merge_into(path: Path, kept: dict) -> None:
    try:
        table = merge_tables(json.loads(path.read_text()), kept, [lv.name for lv in LEVERS], stale_prefix=NOT_RUN)
    except ValueError as e:
        raise SystemExit(f"--merge: {e}; run without --merge") from None
    write_json(path, table)
    write_text(path.with_suffix(".md"), render_markdown(table))


if __name__ == "__main__":
    sys.exit(main())
