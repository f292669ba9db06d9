"""edge_runtime predict | benchmark | serve (argparse: no dependency beyond the runtime's own)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_runtime.atomic import atomic_path
from edge_runtime.errors import EdgeRuntimeError, one_line


def _predict(args) -> None:
    from edge_runtime.classifier import DISCLAIMER, Classifier

    clf = Classifier.load(args.model, args.threads, verify=not args.no_verify, site=args.site)
    context = _context(args, clf)
    if args.cam_out:
        Path(args.cam_out).mkdir(parents=True, exist_ok=True)
    for image in args.images:
        p = clf.predict(image, with_cam=bool(args.cam_out) or not args.json, target=args.target, context=context)
        row = {"image": image, **p.to_dict()}
        if args.cam_out and p.heatmap is not None:
            out = Path(args.cam_out) / f"{Path(image).stem}_cam.png"
            with atomic_path(out) as tmp:  # never a half-written PNG
                p.overlay().save(tmp, format="PNG")
            row["heatmap_png"] = str(out)
        if args.json:
            print(json.dumps(row))
            continue
        flag = "  [uncertain]" if p.uncertain else ""
        print(f"{image}: {p.label} {p.confidence:.1%}{flag}  malignant risk {p.malignant_risk:.1%}")
        for label, prob in list(p.probabilities.items())[:args.top]:
            print(f"  {label:<10} {prob:6.1%}")
        print(f"  {p.next_step}" + (f"\n  heatmap: {row['heatmap_png']}" if "heatmap_png" in row else ""))
    if not args.json:
        print(DISCLAIMER)


def _context(args, clf):
    """The patient's context from --age/--sex/--body-site, checked against the card's prior."""
    from edge_runtime.clinical import Context

    if args.age is None and args.sex is None and args.body_site is None:
        return None
    if clf.clinical is None:
        raise EdgeRuntimeError(f"{Path(args.model).name} has no clinical prior, so --age/--sex/--body-site "
                               "would be ignored; drop them or export a model trained with --clinical")
    context = Context(args.age, args.sex, args.body_site)
    clf.clinical.check(context)
    return context


def _benchmark(args) -> None:
    from edge_runtime.bench import benchmark

    r = benchmark(Path(args.model), args.threads, args.runs, args.warmup, args.data, args.image, not args.no_cold,
                  verify=not args.no_verify, site=args.site)
    r["device"].update(name=args.device_name or r["device"]["machine"], representative=not args.emulated)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    m = r["method"]
    print(f"{r['model']['file']} on {r['device']['machine']} ({m['interpreter']}, {m['delegate']}, "
          f"{m['threads']} threads, {m['warmup']} warm-ups, {m['runs']} runs)")
    print(f"  load {r['load_ms']:.1f} ms, first inference {r['first_inference_ms']:.1f} ms, peak RSS "
          f"{r['peak_rss_mb']:.0f} MB" + (f", cold start {r['cold_start_ms']:.0f} ms" if "cold_start_ms" in r else ""))
    for key in ("inference", "end_to_end_without_cam", "end_to_end_with_cam"):
        if r[key]:
            t = r[key]
            print(f"  {key:<24} p50 {t['p50_ms']:7.2f}  p90 {t['p90_ms']:7.2f}  p99 {t['p99_ms']:7.2f} ms")
    if "accuracy" in r:
        a = r["accuracy"]
        print(f"  balanced accuracy {a['balanced_accuracy']:.3f} on {a['n']} images; recall "
              + ", ".join(f"{k} {v:.2f}" for k, v in a["recall"].items()))
        pos = a.get("positive") or {}
        if pos:
            fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
            print(f"  {pos['label']} vs rest: AUC {fmt(pos['auc'])}, sensitivity {fmt(pos['sensitivity'])}, "
                  f"specificity {fmt(pos['specificity'])} (at the card's operating point)")


def _serve(args) -> None:
    from edge_runtime.server import serve

    serve(args.model, args.host, args.port, args.threads, args.site)


def _calibrate(args) -> None:
    from edge_runtime.calibrate import calibrate

    p = calibrate(args.model, args.data, args.out, args.min_recall, args.site_name, args.threads,
                  verify=not args.no_verify)
    if args.json:
        print(json.dumps(p, indent=2))
        return
    point, cal = p["operating_point"], p["calibration"]
    print(f"{args.out}: site {p['site']!r}, fitted on {p['n_images']} photos ("
          + ", ".join(f"{k} {n}" for k, n in p["counts"].items() if n) + ")")
    if point is not None:
        before, after = point["site_with_card"], point["site_after"]
        print(f"  {point['label']} recall {before['recall']:.2f} with the card's operating point -> "
              f"{after['recall']:.2f} (target {point['min_recall']}); balanced accuracy "
              f"{before['balanced_accuracy']:.3f} -> {after['balanced_accuracy']:.3f}")
    if cal["refer_at_risk"] is not None:
        card_refer = cal["card_refer_at_risk"]
        referred = p["site_referred"]
        benign = "" if referred["benign"] is None else f" and {referred['benign']:.0%} of its benign ones"
        print(f"  refer at malignant risk >= {cal['refer_at_risk']:.0%} (card: "
              f"{'none' if card_refer is None else format(card_refer, '.0%')}): refers "
              f"{referred['malignant']:.0%} of this site's malignant photos{benign}")
    cv = p["cross_validated"]
    line = f"  on photos it was not fitted on ({cv['folds']}-fold): " + (
        f"not measured ({cv['skipped']})" if cv["decisions"] is None else
        f"{point['label'] if point else 'positive'} recall {cv['decisions']['recall']:.2f}, "
        f"balanced accuracy {cv['decisions']['balanced_accuracy']:.3f}")
    if cv["referred"] is not None:
        benign = "" if cv["referred"]["benign"] is None else f", {cv['referred']['benign']:.0%} of benign"
        line += f"; refers {cv['referred']['malignant']:.0%} of malignant{benign}"
    print(line)
    if cv["grouped_by"] == "lesion_id" and cv["photos_without_lesion_id"]:
        print(f"  {cv['photos_without_lesion_id']} photos have no lesion_id and were folded alone; fill it in "
              "where a lesion has several photos, or they may be scored by thresholds fitted on their twins")
    print(f"  (the figures above it are in-sample); use it with: edge_runtime predict {args.model} IMAGE "
          f"--site {args.out}")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edge_runtime", description="Skin-lesion classification with a heatmap, "
                                 "on the device. Decision support only, not a diagnosis.")
    ap.add_argument("--debug", action="store_true", help="show the full traceback of an error instead of its one line")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="rank the classes for each image; optionally write heatmap overlays")
    p.add_argument("model")
    p.add_argument("images", nargs="+")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--cam-out", help="folder for <image>_cam.png overlays")
    p.add_argument("--target", help="class whose heatmap to draw (default: the predicted one)")
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--age", type=float, help="patient's age in years (models trained with --clinical)")
    p.add_argument("--sex", help="patient's sex as the model's card lists it, e.g. female")
    p.add_argument("--body-site", help="where the lesion is, as the card lists it, e.g. back or face")
    p.set_defaults(run=_predict)
    b = sub.add_parser("benchmark", help="latency, memory and cold start; accuracy with --data")
    b.add_argument("model")
    b.add_argument("--data", type=Path, help="CSV with path,label[,age,sex,site] columns, or a folder of class folders")
    b.add_argument("--image", type=Path, help="photo to time (default: a neutral 600x450 image)")
    b.add_argument("--runs", type=int, default=100)
    b.add_argument("--warmup", type=int, default=10)
    b.add_argument("--no-cold", action="store_true", help="skip the cold-start process")
    b.add_argument("--json", action="store_true")
    b.add_argument("--device-name", help="how the report names this device, e.g. 'Raspberry Pi 5'")
    b.add_argument("--emulated", action="store_true", help="mark timings as not representative (e.g. under qemu)")
    b.set_defaults(run=_benchmark)
    s = sub.add_parser("serve", help="a local web page: upload or take a photo, see the result and heatmap")
    s.add_argument("model")
    s.add_argument("--host", default="127.0.0.1", help="loopback by default; 0.0.0.0 exposes it to the network")
    s.add_argument("--port", type=int, default=8080)
    s.set_defaults(run=_serve)
    c = sub.add_parser("calibrate", help="refit the operating point and referral threshold on this site's "
                       "labelled photos; writes a site profile for --site")
    c.add_argument("model")
    c.add_argument("--data", type=Path, required=True,
                   help="CSV with path,label[,age,sex,site,lesion_id] columns, or a folder of class folders")
    c.add_argument("--out", type=Path, required=True, help="the site profile to write (.json)")
    c.add_argument("--min-recall", type=float, help="recall the positive class (melanoma) must reach on these "
                   "photos (default: the card's own target; none: keep the card's operating point)")
    c.add_argument("--site-name", help="how predictions name the site (default: the data's name)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(run=_calibrate)
    for sp in (p, b, s):
        sp.add_argument("--site", type=Path, help="site profile from `edge_runtime calibrate` (its operating point "
                        "and referral threshold replace the card's)")
    for sp in (p, b, s, c):
        sp.add_argument("--threads", type=int, default=4)
        sp.add_argument("--no-verify", action="store_true", help="run even if the SHA-256 does not match the card")
    return ap


def main(argv=None) -> int:
    """Every error ends as one `error:` line: exit 2 for input the user can fix (or a path the OS
    refused), exit 1 for a bug; the traceback only under --debug."""
    args = parser().parse_args(argv)
    if args.threads < 1:
        print(f"error: --threads {args.threads} must be at least 1", file=sys.stderr)
        return 2
    try:
        args.run(args)
    except Exception as exc:
        if args.debug:
            raise
        code, message = one_line(exc)
        print(f"error: {message}", file=sys.stderr)
        return code
    return 0

