"""Validation-only experiments for ``ejc evaluate next-event`` (issue 7): never reads test cases.

Fits on ``split.fit`` and scores ``split.val`` (the last 20% of the training cases) for a grid
of recency half-lives, recording every epoch's validation loss and metrics, and the MAE of a
few gap quantiles at the loss-selected epoch. Prints one JSON record per fit; choose defaults
from these, not from test figures. Usage:

    python benchmarks/next_event_validation.py ../shared/data/process/helpdesk_tax.csv --seeds 0 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ejc.config import load_config  # noqa: E402
from ejc.eval.cli import NEXT_EVENT_OVERRIDES  # noqa: E402
from ejc.eval.next_event import FineTuneOptions, _raw_predictions, fit_next_event, pretrain_cases, scores_of_probs  # noqa: E402
from ejc.eval.protocol import chronological_split, load_log, prefix_targets  # noqa: E402


def hl_arg(x: str) -> float | None:
    return None if x.lower() == "none" else float(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--half-lives", type=hl_arg, nargs="+", default=[None, 0.3, 0.1, 0.05, 0.03, 0.02])
    ap.add_argument("--select", default="loss")
    ap.add_argument("--patience", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--lr", type=float, default=FineTuneOptions.lr)
    ap.add_argument("--quantiles", type=float, nargs="+", default=[0.4, 0.45, 0.5, 0.55, 0.6])
    ap.add_argument("-o", "--override", dest="overrides", nargs="+", default=[])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--refit-check", action="store_true", help="mini-protocol: select on (fit minus its last 20%%, that 20%%), then score on val both the selection model and a refit on all of fit")
    ap.add_argument("--pipeline", action="store_true", help="mini-protocol of the whole `ejc evaluate next-event` run: fit = fit minus its last 20%%, val = that 20%%, 'test' = val")
    ap.add_argument("--gap-select", default=None)
    ap.add_argument("--ensemble", type=int, default=1)
    ap.add_argument("--no-refit", action="store_true")
    ap.add_argument("--median-weight", type=float, default=0.0)
    ap.add_argument("--no-blend", action="store_true")
    ap.add_argument("--jepa-weight", type=float, default=FineTuneOptions.jepa_weight, help="auxiliary JEPA loss weight while fine-tuning (0: off)")
    ap.add_argument("--out", type=Path, default=None, help="JSON lines file (appended)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config("small", NEXT_EVENT_OVERRIDES + args.overrides + ["train.device=cpu"])
    split = chronological_split(load_log(args.src).sequences)
    val_t = prefix_targets(split.val)
    opts = FineTuneOptions(max_epochs=args.epochs, patience=args.patience, select=args.select, lr=args.lr)
    if args.pipeline:
        from ejc.eval.next_event import run_next_event
        from ejc.eval.protocol import Split

        n_in = len(split.fit) - int(round(0.2 * len(split.fit)))
        for seed in args.seeds:
            o = FineTuneOptions(max_epochs=args.epochs, patience=args.patience, select=args.select, gap_select=args.gap_select, lr=args.lr, half_lives=tuple(args.half_lives),
                                ensemble=args.ensemble, refit=not args.no_refit, seed=seed,
                                median_weight=args.median_weight, blend=not args.no_blend, jepa_weight=args.jepa_weight)
            t0 = time.perf_counter()
            run = run_next_event(Split(split.fit[:n_in], split.fit[n_in:], split.val), cfg, o)
            d = {k: v for k, v in run.details.items() if k not in ("split",)}
            d["ejc_selection"] = {k: v for k, v in d["ejc_selection"].items() if k != "history_by_half_life"}
            out = {"mode": "pipeline", "seed": seed, "select": args.select, "gap_select": args.gap_select, "ensemble": args.ensemble, "refit": not args.no_refit,
                   "overrides": args.overrides, "jepa_weight": args.jepa_weight,
                   "half_lives": args.half_lives, "lr": args.lr, "median_weight": args.median_weight, "val_metrics": run.metrics(), "seconds": round(time.perf_counter() - t0), "details": d}
            print(json.dumps(out), flush=True)
            print(f"  pipeline seed {seed} select {args.select}/{args.gap_select} ens {args.ensemble} refit {not args.no_refit}: {json.dumps(run.metrics())} "
                  f"({out['seconds']} s) chosen {json.dumps({k: v for k, v in d['ejc_selection'].items() if k != 'by_half_life'})}", file=sys.stderr, flush=True)
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(out) + "\n")
        return
    if args.refit_check:
        # the whole selection on an inner split of fit, scored on val (which the inner split never sees)
        n_in = len(split.fit) - int(round(0.2 * len(split.fit)))
        fit_in, val_in = split.fit[:n_in], split.fit[n_in:]

        def on_val(fr):  # noqa: ANN001, ANN202
            names = list(fr.spec.vocab.itos[2:])
            probs, gaps = _raw_predictions(fr.net, fr.spec, split.val, val_t, names)
            return scores_of_probs(probs, gaps[:, 0], val_t, names)

        for seed in args.seeds:
            pre = pretrain_cases(cfg, fit_in, seed)
            tried = [fit_next_event(cfg, fit_in, val_in, opts, seed=seed, pretrained=pre, half_life=hl) for hl in args.half_lives]
            sel = min(tried, key=lambda fr: fr.best_value)
            ref = fit_next_event(cfg, split.fit, None, opts, epochs=max(1, sel.best_epoch), seed=seed, half_life=sel.half_life)
            out = {"mode": "refit_check", "seed": seed, "lr": args.lr, "select": args.select, "chosen_half_life": sel.half_life, "inner_best_epoch": sel.best_epoch,
                   "inner_by_half_life": {str(fr.half_life): fr.best_record for fr in tried},
                   "val_of_each_selection_model": {str(fr.half_life): on_val(fr) for fr in tried},
                   "selection_model": on_val(sel), "refit_on_fit": on_val(ref)}
            print(json.dumps(out), flush=True)
            print(f"  refit check seed {seed} select {args.select}: " + json.dumps({k: out[k] for k in ("chosen_half_life", "inner_best_epoch", "selection_model", "refit_on_fit", "val_of_each_selection_model")}), file=sys.stderr, flush=True)
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(out) + "\n")
        return
    for seed in args.seeds:
        t0 = time.perf_counter()
        pre = pretrain_cases(cfg, split.fit, seed)
        print(f"seed {seed}: pretrained in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        for hl in args.half_lives:
            fr = fit_next_event(cfg, split.fit, split.val, opts, seed=seed, pretrained=pre, half_life=hl)
            names = list(fr.spec.vocab.itos[2:])
            probs, gaps = _raw_predictions(fr.net, fr.spec, split.val, val_t, names, tuple(args.quantiles))
            mae_q = {str(q): scores_of_probs(probs, gaps[:, i], val_t, names)["time_mae_days"] for i, q in enumerate(args.quantiles)}
            rec = {"seed": seed, "half_life": hl, "select": args.select, "lr": args.lr, "overrides": args.overrides, "best_epoch": fr.best_epoch, "epochs": fr.epochs,
                   "best": fr.best_record, "val_mae_by_quantile": mae_q, "seconds": round(fr.seconds, 1), "history": fr.history}
            line = json.dumps(rec)
            print(line, flush=True)
            print(f"  hl {hl}: epoch {fr.best_epoch}/{fr.epochs} " + " ".join(f"{k}={v:.4f}" for k, v in fr.best_record.items() if k != "epoch") + f" ({fr.seconds:.0f} s)", file=sys.stderr, flush=True)
            if args.out:
                with args.out.open("a") as f:
                    f.write(line + "\n")
            # keep the saved probabilities for ensembling analyses
            if args.out:
                np.savez_compressed(args.out.with_suffix(f".s{seed}_hl{hl}_{args.select}_lr{args.lr}.npz"), probs=probs, gaps=gaps, quantiles=np.array(args.quantiles))


if __name__ == "__main__":
    main()
