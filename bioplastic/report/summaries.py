"""Compact "key numbers" tables for the analyses whose results.json the report knows.

Each function takes ``results`` (and the run's config) and returns a list of
:class:`~bioplastic.report.collect.Table`; the generic tables of every number follow them in the
report. A summary that cannot read the numbers (a changed format) is left out, never a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .claims import _rstar_records
from .collect import Table, fmt_cell, fmt_number


def accuracy_vs_rank(results: Mapping, config: Mapping) -> list[Table]:
    """Final metric (mean ± sd over seeds) per rule and rank; references in one column."""
    metric = results["metric"]
    ranks = sorted({e["rank"] for entries in results["ldfa"].values() for e in entries})
    rows = [[ref, fmt_cell(entry[metric])] + [""] * len(ranks) for ref, entry in results["references"].items()]
    for sub, entries in results["ldfa"].items():
        by_rank = {e["rank"]: e for e in entries}
        rows.append([f"ldfa {sub}", ""] + [fmt_cell(by_rank[r][metric]) if r in by_rank else ""
                                           for r in ranks])
    return [Table(f"{metric.replace('_', ' ')} (mean ± sd over seeds), task dimension d = "
                  f"{results['task_dim']}", ["rule", "no rank"] + [f"r = {r}" for r in ranks], rows)]


def linear_theory(results: Mapping, config: Mapping) -> list[Table]:
    """Per condition: error to the teacher, final mode strengths, fixed-point numbers."""
    rows = []
    for name, c in results["conditions"].items():
        rows.append([name, fmt_number(c.get("relative_error_to_teacher")),
                     fmt_cell([round(v, 3) for v in c["final_modes"]]) if "final_modes" in c else "",
                     fmt_number(c.get("relative_distance_to_fixed_point")),
                     fmt_number(c.get("loss_ratio_to_rank_r_optimum"))])
    return [Table("end of training", ["condition", "relative error to teacher", "final mode strengths",
                                      "distance to predicted fixed point", "loss / rank-r optimum"], rows)]


def alignment(results: Mapping, config: Mapping) -> list[Table]:
    """Per condition: test accuracy, final angle to W^T and subspace angle per pathway."""
    pathways = sorted({l for c in results["conditions"].values()
                       for l in c["summary"]["ends"].get("angle", {})}, key=int)
    capture = any("capture" in c["summary"]["ends"] for c in results["conditions"].values())
    rows = []
    for name, c in results["conditions"].items():
        ends = c["summary"]["ends"]
        rows.append([name, fmt_cell(c["summary"].get("test_accuracy"))]
                    + [fmt_number(ends.get("angle", {}).get(l, {}).get("last")) for l in pathways]
                    + [fmt_number(ends.get("mean_principal_angle", {}).get(l, {}).get("last")) for l in pathways]
                    + ([fmt_number(ends.get("capture", {}).get(l, {}).get("last")) for l in pathways]
                       if capture else []))
    chance = results.get("random_subspace_angle", {})
    return [Table("end of training (mean over seeds; angles in degrees)",
                  ["condition", "test accuracy"] + [f"angle B{l} to W{l}^T" for l in pathways]
                  + [f"subspace angle B{l} (random {fmt_number(chance.get(l))})" for l in pathways]
                  + ([f"capture B{l}" for l in pathways] if capture else []), rows)]


def rank_vs_task_dim(results: Mapping, config: Mapping) -> list[Table]:
    """r* (median over seeds; per seed in brackets) per task, rule and width, against d."""
    records = _rstar_records(results)
    tables = []
    for task in dict.fromkeys(r["task"] for r in records):
        mine = [r for r in records if r["task"] == task]
        dims = sorted({r["d"] for r in mine})
        keys = list(dict.fromkeys((r["rule"], r["width"]) for r in mine))
        cells = {(r["rule"], r["width"], r["d"]): r for r in mine}

        def cell(r):
            if r is None:
                return ""
            text = "not reached" if r["r"] is None else fmt_number(r["r"])
            seeds = r.get("per_seed")
            if isinstance(seeds, list) and len(seeds) > 1:
                text += " [" + ", ".join("–" if x is None else fmt_number(x) for x in seeds) + "]"
            return text

        rows = [[rule, str(width)] + [cell(cells.get((rule, width, d))) for d in dims] for rule, width in keys]
        tables.append(Table(f"{task + ': ' if task else ''}r*, the smallest rank within {fmt_number(results.get('factor'))}x "
                            "bp's error (median over seeds [per seed]; not reached: none of the grid)",
                            ["rule", "width"] + [f"d = {d}" for d in dims], rows))
    return tables


def width_vs_rank(results: Mapping, config: Mapping) -> list[Table]:
    """The metric (mean ± sd over seeds) per condition and width."""
    metric = results["metric"]
    widths = sorted({c["width"] for c in results["conditions"]})
    labels = list(dict.fromkeys(c["label"] for c in results["conditions"]))
    cells = {(c["label"], c["width"]): c.get(f"{metric}_summary") for c in results["conditions"]}
    rows = [[label] + [fmt_cell(cells[(label, w)]) if (label, w) in cells else "" for w in widths]
            for label in labels]
    return [Table(f"{metric.replace('_', ' ')} (mean ± sd over seeds), ldfa at r = {results.get('rank')}",
                  ["condition"] + [f"width {w}" for w in widths], rows)]


#: Analysis name -> summary function.
def cnn_vit(results: Mapping, config: Mapping) -> list[Table]:
    """Per (model, task) panel: final test accuracy of bp, fa and each ldfa rule per rank."""
    tables = []
    for p in results["panels"]:
        ranks = sorted({e["rank"] for entries in p["ldfa"].values() for e in entries})
        rows = [[ref, fmt_cell(entry["test_accuracy"])] + [""] * len(ranks)
                for ref, entry in p["references"].items()]
        for sub, entries in p["ldfa"].items():
            by_rank = {e["rank"]: e for e in entries}
            rows.append([f"ldfa {sub}", ""] + [fmt_cell(by_rank[r]["test_accuracy"]) if r in by_rank else ""
                                               for r in ranks])
        tables.append(Table(f"{p['model']} on {p['task']} (d = {p['task_dim']}): final test accuracy",
                            ["rule", "no rank"] + [f"r = {r}" for r in ranks], rows))
    return tables


def compute_to_accuracy(results: Mapping, config: Mapping) -> list[Table]:
    """Per model and condition: final accuracy, FLOPs per step and to 90 % of the final accuracy,
    each relative to bp."""
    rows = []
    for model, m in results["models"].items():
        for c in m["conditions"]:
            rel = c.get("relative_to_bp") or {}
            rows.append([model, c["label"], fmt_number(c["mean"]["final_accuracy"]),
                         fmt_number(c["mean"]["epochs_to_fraction"]),
                         fmt_number(c.get("step_relative_to_bp", 1.0 if c["rule"] == "bp" else None)),
                         fmt_number(rel.get("flops_to_fraction", 1.0 if c["rule"] == "bp" else None))])
    return [Table("compute to 90 % of the final accuracy (relative to bp of the same model)",
                  ["model", "condition", "final accuracy", "epochs to 90 %", "FLOPs per step / bp",
                   "FLOPs to 90 % / bp"], rows)]


def receptive_fields(results: Mapping, config: Mapping) -> list[Table]:
    """Per condition (bp, each rank): the retina's field indices and the test accuracy, over seeds."""
    rows = [[c["label"], fmt_cell(c["centre_surround_summary"]), fmt_cell(c["orientation_summary"]),
             fmt_cell(c["test_accuracy_summary"])] for c in results["conditions"]]
    init = results.get("at_init") or {}
    if init:
        rows.append(["untrained retina", fmt_cell(init.get("centre_surround_summary")),
                     fmt_cell(init.get("orientation_summary")), ""])
    return [Table("retina output channels (mean over channels, then mean ± sd over seeds)",
                  ["condition", "centre-surround index", "orientation index", "test accuracy"], rows)]


SUMMARIES: dict[str, Callable[[Mapping, Mapping], list[Table]]] = {
    "receptive_fields": receptive_fields,
    "cnn_vit": cnn_vit,
    "compute_to_accuracy": compute_to_accuracy,
    "accuracy_vs_rank": accuracy_vs_rank,
    "linear_theory": linear_theory,
    "alignment": alignment,
    "rank_vs_task_dim": rank_vs_task_dim,
    "width_vs_rank": width_vs_rank,
}


def summary_tables(analysis: str, results, config: Mapping) -> list[Table]:
    """The key-numbers tables of ``analysis``, or none (unknown analysis, changed format)."""
    fn = SUMMARIES.get(analysis)
    if fn is None or not isinstance(results, Mapping):
        return []
    try:
        return fn(results, config)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return []
