"""The paper's claims, each judged from the numbers of one analysis's latest run.

Hanut & Kadmon, arXiv 2502.20580. Each claim is a function ``f(results, config=None) -> (verdict,
sentence)``: ``results`` is the analysis's ``results.json`` (None when it has not run), ``config`` the
``config`` entry of its ``config.json``; the verdict is one of :data:`VERDICTS` and the sentence gives
the numbers, the thresholds and the scale the claim was tested at. Every analysis here runs on small
data that installs with the package (8x8 digits, teacher-student tasks, a linear network), so a
"supported" verdict says that this run is consistent with the claim at that scale; no sentence says
"reproduced" for such a proxy.

The thresholds are module constants, stated in every sentence that uses them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

VERDICTS = ("supported", "not supported", "inconclusive", "not run")

#: Claim 1: ldfa's test accuracy may trail bp's by at most this much (absolute, 0.02 = 2 points) ...
ACCURACY_MARGIN = 0.02
#: ... or, on a regression task, its relative error may be at most this factor of bp's ...
ERROR_FACTOR = 2.0
#: ... or bp's plus this much, whichever is looser (both tiny errors count as a match).
ERROR_SLACK = 0.01
#: Claim 1: ranks from d up to this factor of d count as "about d".
ABOUT_D = 2
#: Fewer epochs than this is a smoke test, not a test of a claim.
MIN_EPOCHS = 5
#: Claim 3: the fixed-feedback simulation must be at most this fraction of its distance to the
#: rank-r optimum away from the predicted spurious fixed point ...
CLOSER_FACTOR = 0.5
#: ... and its loss at least this factor of the rank-r optimum's (else the "spurious" point is as
#: good as the best rank-r solution and there is nothing spurious to show).
SPURIOUS_LOSS_RATIO = 1.1
#: Claim 3: within this relative distance, the formula predicts the reached point quantitatively.
FORMULA_TOLERANCE = 0.05
#: Claim 4: aligned with W^T: final angle at most this many degrees above the best any rank-r B
#: reaches (the truncated SVD of W^T) ...
ALIGN_SLACK_DEG = 15.0
#: ... captures the error subspace: mean principal angle to the error's top-r subspace at most this
#: fraction of the angle between random subspaces ...
SUBSPACE_FRACTION = 0.5
#: ... or a capture measure tr(P C P^T) / (sum of the top-r eigenvalues of C) of at least this.
CAPTURE_MIN = 0.8
#: Claim 5: ldfa in a wide network must beat bp in a network as narrow as its rank by this much.
NARROW_MARGIN = 0.02

#: Subspace rules that learn the feedback (the paper's adaptive ones); ``fixed`` is the control.
ADAPTIVE = ("local", "normative", "oja", "q_only")

PROXY = "a small proxy, not the paper's CIFAR-10-scale setting"


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and how it is judged."""

    key: str
    statement: str             # the paper's claim, in a sentence
    analysis: str              # the analysis whose results decide it
    judge: Callable[..., tuple[str, str]]


def _num(v: Any) -> float | None:
    """A finite float from a number or a ``{"mean": ...}`` summary; None otherwise."""
    if isinstance(v, Mapping):
        v = v.get("mean")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _f(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}g}"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _seeds(config: Mapping | None) -> str:
    seeds = (config or {}).get("seeds")
    if isinstance(seeds, list):
        return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}"
    return "1 seed" if (config or {}).get("seed") is not None else "seeds unknown"


def _epochs(config: Mapping | None) -> int | None:
    e = (config or {}).get("epochs")
    return e if isinstance(e, int) and not isinstance(e, bool) else None


def _short(config: Mapping | None) -> str | None:
    e = _epochs(config)
    if e is not None and e < MIN_EPOCHS:
        return f"only {e} epoch{'s' if e != 1 else ''} (< {MIN_EPOCHS}): a smoke test, too short to test the claim"
    return None


def _who(names: list[str], one: str = "meets", many: str = "meet") -> str:
    """``"local meets"``, ``"local, oja meet"``."""
    return f"{', '.join(names)} {one if len(names) == 1 else many}"


def _not_run(analysis: str) -> tuple[str, str]:
    return "not run", (f"no results of {analysis} under the results folder; run "
                       f"`bioplastic analysis {analysis}` and build the report again")


# --------------------------------------------------------------------------------------------------
# 1. an error of dimension ~ d trains as well as backprop (accuracy_vs_rank)
# --------------------------------------------------------------------------------------------------

def rank_d_matches_bp(results: Mapping | None, config: Mapping | None = None) -> tuple[str, str]:
    """ldfa with an adaptive subspace rule within a margin of bp at some tested r from d to
    ``ABOUT_D`` d (the value at the smallest r >= d is always reported)."""
    if results is None:
        return _not_run("accuracy_vs_rank")
    metric = results["metric"]
    d = int(results["task_dim"])
    refs = results["references"]
    accuracy = metric == "test_accuracy"
    sizes = results.get("sizes")
    net = f"MLP {'-'.join(map(str, sizes))}" if isinstance(sizes, list) else "MLP"
    if results.get("task") == "digits":
        task = f"the bundled 8x8 digits (d = {d} classes)"
    else:
        task = f"a linear teacher of rank d = {d}" + (f" with {sizes[-1]} outputs" if sizes else "")
    scale = f"{task}, {net}, {_epochs(config) or '?'} epochs, {_seeds(config)}: {PROXY}"
    bp = _num(refs.get("bp", {}).get(metric))
    if bp is None:
        return "inconclusive", f"no bp reference in this run (or it diverged); tested on {scale}"
    if accuracy:
        rule_text = f"test accuracy at most {ACCURACY_MARGIN * 100:.0f} points below bp's"

        def ok(v):
            return v is not None and v >= bp - ACCURACY_MARGIN
    else:
        rule_text = (f"relative test error at most {ERROR_FACTOR:g}x bp's or bp's + {ERROR_SLACK:g}, "
                     "whichever is looser")

        def ok(v):
            return v is not None and v <= max(ERROR_FACTOR * bp, bp + ERROR_SLACK)

    show = _pct if accuracy else _f
    parts, passed, failed = [], [], []
    fixed_text = ""
    for sub, entries in results.get("ldfa", {}).items():
        # "about d": the tested ranks from d to ABOUT_D x d (the smallest r >= d if none is that small)
        above = sorted((e for e in entries if isinstance(e.get("rank"), int) and e["rank"] >= d),
                       key=lambda e: e["rank"])
        if not above:
            continue
        near = [e for e in above if e["rank"] <= ABOUT_D * d] or above[:1]
        first = near[0]
        v = _num(first.get(metric))
        text = f"{sub} at r = {first['rank']}: {show(v) if v is not None else 'diverged'}"
        if sub == "fixed":
            fixed_text = f"; fixed feedback (control) at r = {first['rank']}: {show(v)}"
            continue
        if sub not in ADAPTIVE:
            continue
        met = next((e for e in near if ok(_num(e.get(metric)))), None)
        if met is not None and met is not first:
            text += f" (meets it at r = {met['rank']}: {show(_num(met.get(metric)))})"
        parts.append(text)
        (passed if met is not None else failed).append(sub)
    if not parts:
        return "inconclusive", (f"no adaptive subspace rule was run at a rank r >= d = {d}; tested on {scale}")
    numbers = (f"bp {show(bp)}; ldfa {', '.join(parts)}{fixed_text}. Criterion: {rule_text}, at some "
               f"tested r from d to {ABOUT_D}d")
    short = _short(config)
    readout = _num(refs.get("readout", {}).get(metric))
    if accuracy and readout is not None and bp - readout <= ACCURACY_MARGIN:
        return "inconclusive", (f"{numbers}; but the readout alone (r = 0) reaches {show(readout)}, "
                                f"within the margin of bp, so this task cannot tell rules apart. "
                                f"Tested on {scale}")
    if short:
        return "inconclusive", f"{numbers}; {short}. Tested on {scale}"
    if passed:
        verdict = "supported"
        what = f"{_who(passed)} it" + (f" ({_who(failed, 'does not', 'do not')})" if failed else "")
    else:
        verdict, what = "not supported", "no adaptive rule meets it"
    return verdict, f"{numbers}: {what}. Tested on {scale}"


# --------------------------------------------------------------------------------------------------
# 2. the rank needed scales with d, not with the width (rank_vs_task_dim)
# --------------------------------------------------------------------------------------------------

def _rstar_records(results: Mapping) -> list[dict]:
    """(task, rule, d, width, r*) records. rank_vs_task_dim writes ``r_star`` as a list of
    ``{"task", "dim", "width", "rule", "median", "per_seed", ...}`` (r* of each seed, None where no rank
    of the grid was within the factor; the median counts those as above the grid, None if it falls
    there); nested mappings rule -> d -> width -> r* are read too."""
    src = results["r_star"]
    records = []
    if isinstance(src, list):
        for rec in src:
            value = next((rec[k] for k in ("median", "r_star", "mean", "value") if k in rec), None)
            records.append({"task": str(rec.get("task", "")), "rule": str(rec.get("rule") or rec.get("subspace")),
                            "d": int(rec.get("dim", rec.get("d", rec.get("task_dim")))),
                            "width": int(rec["width"]), "r": _num(value),
                            "per_seed": rec.get("per_seed"), "raw": value})
        return records
    widths = results.get("widths", [])
    widths = {str(w) for w in (widths if isinstance(widths, list) else [])}
    for rule, level1 in src.items():
        for k1, level2 in level1.items():
            for k2, value in level2.items():
                d, width = (k2, k1) if (k1 in widths and k2 not in widths) else (k1, k2)
                records.append({"task": "", "rule": str(rule), "d": int(d), "width": int(width),
                                "r": _num(value), "per_seed": None, "raw": value})
    return records


def _grid_index(r: float | None, grid: list) -> float:
    """Position of r on the rank grid, interpolated in log2 (rank_vs_task_dim's grid doubles, so one
    step is a factor of 2); len(grid) for "not reached"."""
    if r is None:
        return float(len(grid))
    logs = [math.log2(g) for g in grid]
    x = math.log2(r)
    if x <= logs[0]:
        return 0.0
    for i in range(1, len(logs)):
        if x <= logs[i]:
            return i - 1 + (x - logs[i - 1]) / (logs[i] - logs[i - 1])
    return float(len(grid) - 1)


#: Claim 2 is judged on the rules whose subspace adapts to the task (rank_vs_task_dim's ADAPTIVE);
#: the others are shown as context.
SCALING_RULES = ("local", "normative")
TASK_NAMES = {"teacher": "linear teacher-student", "digits": "digit class subsets", "": "task"}


def rank_scales_with_d(results: Mapping | None, config: Mapping | None = None) -> tuple[str, str]:
    """The median r* (the smallest grid rank whose error is within the analysis's factor of bp's)
    grows with d and differs by at most one grid step between widths, for every adaptive rule and
    task."""
    if results is None:
        return _not_run("rank_vs_task_dim")
    cfg = config or {}
    records = _rstar_records(results)
    grid = sorted(results.get("grid") or results.get("ranks") or cfg.get("ranks") or
                  {r["r"] for r in records if r["r"] is not None})
    parts, good, bad, context, skipped = [], [], [], [], []
    for task in dict.fromkeys(r["task"] for r in records):
        mine = [r for r in records if r["task"] == task]
        dims = sorted({r["d"] for r in mine})
        widths = sorted({r["width"] for r in mine})
        if len(dims) < 2 or len(widths) < 2:
            skipped.append(f"{TASK_NAMES.get(task, task)} left out: r* measured at d in {dims} and widths "
                           f"{widths}, the claim needs two of each")
            continue
        for rule in dict.fromkeys(r["rule"] for r in mine):
            table = {(r["d"], r["width"]): r["r"] for r in mine if r["rule"] == rule}
            idx = {k: _grid_index(v, grid) for k, v in table.items()}
            grows = all(idx[(dims[-1], w)] > idx[(dims[0], w)] and
                        all(idx[(b, w)] >= idx[(a, w)] for a, b in zip(dims, dims[1:])) for w in widths)
            gap = max(abs(idx[(d, widths[-1])] - idx[(d, widths[0])]) for d in dims)
            same = gap <= 1.0
            cells = "; ".join(f"w={w}: " + ", ".join(
                f"{_f(table[(d, w)], 3) if table[(d, w)] is not None else '>' + _f(grid[-1])}" for d in dims)
                for w in widths)
            label = f"{task + ' ' if task else ''}{rule}"
            verdict = ("ok" if grows and same else
                       ", ".join(x for x in ("" if grows else "does not grow with d",
                                             "" if same else f"widths {gap:.1f} grid steps apart") if x))
            line = f"{label} (d = {', '.join(map(str, dims))}) {cells} [{verdict}]"
            if rule in SCALING_RULES:
                parts.append(line)
                (good if grows and same else bad).append(label)
            else:
                context.append(line)
    factor = results.get("factor") or cfg.get("factor")
    crit = (f"r* = median over seeds of the smallest rank in {{{', '.join(_f(g) for g in grid)}}} whose final "
            f"relative test error is within {_f(factor)}x bp's" if factor else "r* as the analysis defines it")
    crit += (f"; judged on {', '.join(SCALING_RULES)}: r* must grow from the smallest to the largest d "
             "(never fall) at every width, and the widths differ by at most one grid step")
    scales = []
    for task in dict.fromkeys(r["task"] for r in records):
        mine = [r for r in records if r["task"] == task]
        dims, widths = sorted({r["d"] for r in mine}), sorted({r["width"] for r in mine})
        epochs = cfg.get(f"{'digit' if task == 'digits' else 'teacher'}_epochs", cfg.get("epochs"))
        extra = (f", {cfg.get('teacher_in', '?')} inputs, {cfg.get('teacher_out', '?')} outputs" if task == "teacher"
                 else "")
        scales.append(f"{TASK_NAMES.get(task, task)} (d in {dims}{extra}), widths {widths}, "
                      f"{epochs if epochs is not None else '?'} epochs")
    scale = "; ".join(scales) + f"; {_seeds(cfg)}: synthetic and small proxies, not the paper's CIFAR-10/100 networks"
    text = ("r*: " + ("; ".join(parts) or "none judged") + (". Other rules: " + "; ".join(context) if context else "")
            + "".join(f". {x}" for x in skipped) + f". Criterion: {crit}")
    epochs = [e for e in (cfg.get("teacher_epochs"), cfg.get("digit_epochs"), cfg.get("epochs"))
              if isinstance(e, int)]
    if epochs and min(epochs) < MIN_EPOCHS:
        return "inconclusive", (f"{text}; only {min(epochs)} epochs (< {MIN_EPOCHS}): a smoke test, too short "
                                f"to test the claim. Tested on {scale}")
    if not parts:
        return "inconclusive", f"{text}; none of {', '.join(SCALING_RULES)} was run. Tested on {scale}"
    if not bad:
        return "supported", f"{text}: met by every one. Tested on {scale}"
    if not good:
        return "not supported", f"{text}: met by none. Tested on {scale}"
    return "inconclusive", f"{text}: {_who(good)} it; not {', '.join(bad)}. Tested on {scale}"


# --------------------------------------------------------------------------------------------------
# 3. fixed task-agnostic low-rank feedback leads to spurious solutions (linear_theory)
# --------------------------------------------------------------------------------------------------

def _rel(a: list, b: list) -> float:
    num = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))
    den = math.sqrt(sum(y * y for y in b))
    return num / den if den > 0 else math.inf


def fixed_feedback_spurious(results: Mapping | None, config: Mapping | None = None) -> tuple[str, str]:
    """The fixed-feedback simulation ends near the predicted spurious fixed point, far from the
    rank-r optimum, at a loss above the optimum's."""
    if results is None:
        return _not_run("linear_theory")
    fixed = results["conditions"]["fixed"]
    r = (config or {}).get("rank", results.get("rank"))
    final = [float(v) for v in fixed["final_modes"]]
    fp_modes = [float(v) for v in fixed["fixed_point_modes"]]
    m = len(final)
    if not isinstance(r, int):
        return "inconclusive", "the feedback rank r is not recorded in config.json; cannot place the rank-r optimum"
    # the rank-r optimum (truncated SVD of S) has mode strengths 1 on the top r modes, 0 elsewhere
    optimum = [1.0] * min(r, m) + [0.0] * (m - min(r, m))
    d_fp_modes, d_opt_modes = _rel(final, fp_modes), _rel(final, optimum)
    d_fp = _num(fixed.get("relative_distance_to_fixed_point"))
    d_opt = _num(fixed.get("relative_distance_to_rank_r_optimum"))
    ratio = _num(fixed.get("loss_ratio_to_rank_r_optimum"))
    in_modes = d_fp is None or d_opt is None
    if in_modes:  # compare in one measure: mode strengths
        near, far, measure = d_fp_modes, d_opt_modes, "relative distance in mode strengths"
    else:
        near, far, measure = d_fp, d_opt, "relative distance ||W2W1 - X|| / ||X||"
    steps = (config or {}).get("steps")
    n, k = (config or {}).get("n_in"), (config or {}).get("n_hidden")
    scale = (f"a two-layer linear network ({n}-{k}-{m}), teacher with {m} modes, rank r = {r} fixed "
             f"feedback, {steps if steps is not None else '?'} steps, one seed: the paper's own linear setting "
             "at small size")
    numbers = (f"fixed rank-{r} feedback ends at {measure} {_f(near)} from the predicted spurious fixed point "
               f"and {_f(far)} from the rank-{r} optimum")
    if d_fp is not None and in_modes:
        numbers += f" (full-matrix distance to the fixed point {_f(d_fp)})"
    numbers += f"; its loss is {_f(ratio)}x the rank-{r} optimum's"
    crit = (f"Criterion: distance to the fixed point at most {CLOSER_FACTOR:g}x the distance to the optimum "
            f"and loss at least {SPURIOUS_LOSS_RATIO:g}x the optimum's")
    formula = d_fp if d_fp is not None else near
    quant = (f"; the formula predicts the reached point within {FORMULA_TOLERANCE:.0%}" if formula <= FORMULA_TOLERANCE
             else f"; the formula's prediction is off by {formula:.0%} (more than {FORMULA_TOLERANCE:.0%}), "
                  "qualitative agreement only")
    if ratio is None:
        return "inconclusive", f"{numbers}. The loss ratio is missing. Tested on {scale}"
    if near <= CLOSER_FACTOR * far and ratio >= SPURIOUS_LOSS_RATIO:
        return "supported", f"{numbers}. {crit}: met{quant}. Tested on {scale}"
    if far <= near or ratio < SPURIOUS_LOSS_RATIO:
        return "not supported", (f"{numbers}. {crit}: not met (it is no closer to the spurious point than to "
                                 f"the optimum, or no worse than the optimum). Tested on {scale}")
    return "inconclusive", (f"{numbers}. {crit}: not met; closer to the fixed point but not clearly "
                            f"(has the run converged?). Tested on {scale}")


# --------------------------------------------------------------------------------------------------
# 4. learned feedback aligns with W^T / captures the error subspace (alignment)
# --------------------------------------------------------------------------------------------------

def _last(ends: Mapping, key: str) -> dict:
    return {l: _num(e.get("last")) for l, e in (ends.get(key) or {}).items()}


def learned_feedback_aligns(results: Mapping | None, config: Mapping | None = None) -> tuple[str, str]:
    """Each learned ldfa rule ends aligned with W^T (near the best rank-r angle) or with its feedback
    subspace close to the error's principal subspace; fixed feedback is reported as the control."""
    if results is None:
        return _not_run("alignment")
    conds = results["conditions"]
    chance = {l: _num(v) for l, v in (results.get("random_subspace_angle") or {}).items()}
    rank = (config or {}).get("rank")
    parts, good, bad, control = [], [], [], ""
    for name, c in conds.items():
        sub = c.get("subspace")
        if c.get("rule") != "ldfa" or sub is None:
            continue
        ends = c["summary"]["ends"]
        angle, best = _last(ends, "angle"), _last(ends, "optimum_angle")
        sub_angle = _last(ends, "mean_principal_angle")
        capture_key = next((k for k in ends if "capture" in k), None)
        capture = _last(ends, capture_key) if capture_key else {}
        aligned = bool(angle) and all(a is not None and best.get(l) is not None
                                      and a <= best[l] + ALIGN_SLACK_DEG for l, a in angle.items())
        captures = bool(sub_angle) and all(a is not None and chance.get(l) is not None
                                           and a <= SUBSPACE_FRACTION * chance[l] for l, a in sub_angle.items())
        if capture:
            captures = captures or all(v is not None and v >= CAPTURE_MIN for v in capture.values())
        text = (f"{sub}: angle to W^T " + ", ".join(f"B{l} {_f(a, 3)} deg (best rank-r {_f(best.get(l), 3)})"
                                                    for l, a in angle.items())
                + "; subspace angle " + ", ".join(f"B{l} {_f(a, 3)} deg (random {_f(chance.get(l), 3)})"
                                                  for l, a in sub_angle.items())
                + ("; capture " + ", ".join(f"B{l} {_f(v, 3)}" for l, v in capture.items()) if capture else ""))
        if sub == "fixed":
            control = f" Control, fixed feedback: {text.split(': ', 1)[1]}."
            continue
        parts.append(text)
        (good if aligned or captures else bad).append(sub)
    sizes = results.get("sizes")
    scale = (f"the bundled 8x8 digits, MLP {'-'.join(map(str, sizes)) if sizes else '?'}, rank r = {rank}, "
             f"{_epochs(config) or '?'} epochs, {_seeds(config)}: {PROXY}")
    crit = (f"Criterion per learned rule, at every pathway: final angle to W^T within {ALIGN_SLACK_DEG:g} deg "
            f"of the best rank-r angle, or mean principal angle to the error's top-r subspace at most "
            f"{SUBSPACE_FRACTION:g}x the random-subspace angle"
            + (f" (or capture >= {CAPTURE_MIN:g})" if any("capture" in p for p in parts) else ""))
    if not parts:
        return "inconclusive", f"no learned ldfa rule in this run.{control} Tested on {scale}"
    numbers = "; ".join(parts)
    short = _short(config)
    if short:
        return "inconclusive", f"{numbers}. {crit}; {short}.{control} Tested on {scale}"
    if not bad:
        return "supported", f"{numbers}. {crit}: every learned rule meets it.{control} Tested on {scale}"
    if not good:
        return "not supported", f"{numbers}. {crit}: no learned rule meets it.{control} Tested on {scale}"
    return "inconclusive", (f"{numbers}. {crit}: {_who(good)} it, {_who(bad, 'does not', 'do not')}."
                            f"{control} Tested on {scale}")


# --------------------------------------------------------------------------------------------------
# 5. a low-dimensional error is not a narrow network (width_vs_rank)
# --------------------------------------------------------------------------------------------------

def _width_records(results: Mapping, metric: str) -> list[dict]:
    """(label, rule, subspace, width, value) of each condition. width_vs_rank writes ``conditions``: a
    list of ``{"label", "rule", "subspace", "rank", "width", "<metric>_summary": {"mean", "sd"}, ...}``
    (labels ``bp``, ``readout``, ``ldfa-<subspace>``, ``bp-narrow``)."""
    out = []
    for rec in results["conditions"]:
        value = rec.get(f"{metric}_summary", rec.get(metric))
        out.append({"label": str(rec.get("label", rec.get("rule"))), "rule": str(rec.get("rule")),
                    "subspace": rec.get("subspace"), "width": int(rec["width"]), "value": _num(value)})
    return out


def low_rank_not_narrow(results: Mapping | None, config: Mapping | None = None) -> tuple[str, str]:
    """ldfa at rank r in the widest network beats bp in a network r wide, and beats training the
    readout alone at that width (else the random features of width, not the error, explain it)."""
    if results is None:
        return _not_run("width_vs_rank")
    cfg = config or {}
    metric = results.get("metric", "test_accuracy")
    accuracy = metric == "test_accuracy"
    recs = _width_records(results, metric)
    r = results.get("rank", cfg.get("rank"))
    narrow_width = results.get("narrow_width", cfg.get("narrow_width", r))
    narrow = next((x["value"] for x in recs if x["label"] == "bp-narrow"), None)
    if narrow is None:
        narrow = next((x["value"] for x in recs if x["rule"] == "bp" and x["width"] == narrow_width), None)
    by = {}
    for x in recs:
        if x["label"] != "bp-narrow":
            by.setdefault(x["label"], {})[x["width"]] = x["value"]
    show = _pct if accuracy else _f
    if accuracy:
        crit = (f"ldfa at its widest width beats bp at width {narrow_width} and the readout alone at that "
                f"width by at least {NARROW_MARGIN * 100:.0f} points each")

        def beats(a, b):
            return a is not None and b is not None and a >= b + NARROW_MARGIN
    else:
        crit = (f"ldfa's relative error at its widest width is at most 1/{ERROR_FACTOR:g} of bp's at width "
                f"{narrow_width} and of the readout alone at that width")

        def beats(a, b):
            return a is not None and b is not None and a * ERROR_FACTOR <= b
    widths = sorted({x["width"] for x in recs if x["label"] != "bp-narrow"})
    task = ("the bundled 8x8 digits (d = 10 classes)" if results.get("task", "digits") == "digits"
            else "a linear teacher of rank 10")
    scale = (f"{task}, MLPs of widths {widths}, rank r = {r}, {_epochs(cfg) or '?'} epochs, {_seeds(cfg)}: "
             f"{PROXY}")
    ldfa = {k: v for k, v in by.items() if k.startswith("ldfa")}
    if narrow is None or not ldfa:
        return "inconclusive", (f"needs bp at width {narrow_width} and ldfa at larger widths; found "
                                f"{', '.join(sorted(by)) or 'nothing'}. Tested on {scale}")
    parts, good, bad, random_features = [], [], [], []
    for label, values in ldfa.items():
        w = max(values)
        v = values[w]
        bp_w, ro = by.get("bp", {}).get(w), by.get("readout", {}).get(w)
        parts.append(f"{label.replace('-', ' ')} at width {w}: {show(v)} (bp there {show(bp_w)}"
                     + (f", readout alone {show(ro)})" if ro is not None else ")"))
        wins_narrow = w > narrow_width and beats(v, narrow)
        wins_readout = ro is None or beats(v, ro)
        (good if wins_narrow and wins_readout else bad).append(label)
        if wins_narrow and not wins_readout:
            random_features.append(label)
    text = f"bp at width {narrow_width}: {show(narrow)}; " + "; ".join(parts) + f". Criterion: {crit}"
    short = _short(cfg)
    if short:
        return "inconclusive", f"{text}; {short}. Tested on {scale}"
    if not bad:
        return "supported", f"{text}: met. Tested on {scale}"
    if random_features and not good:
        return "inconclusive", (f"{text}: ldfa beats the narrow network but not the readout alone, so the "
                                f"width's random features, not the error, may explain it. Tested on {scale}")
    if not good:
        return "not supported", f"{text}: not met. Tested on {scale}"
    return "inconclusive", f"{text}: {_who(good)} it; not {', '.join(bad)}. Tested on {scale}"


#: The claims, in the order the report lists them.
#: cnn_vit: a panel whose bp accuracy is within this of chance did not learn the task, so it cannot
#: tell rules apart (absolute accuracy, 0.10 = 10 points).
LEARNT_MARGIN = 0.10

#: cnn_vit: a panel that misses the margin by less than this many standard errors of the difference
#: of two test accuracies (binomial, sqrt(2 p (1 - p) / n_test)) is within the test set's sampling
#: noise: one seed cannot tell it from a match.
NOISE_SE = 2.0

#: Model names of cnn_vit as the sentence writes them.
_MODEL_NAMES = {"cnn": "CNN", "vit": "ViT"}


def cnn_vit_matches_bp(results: Mapping | None, config: Mapping | None = None) -> tuple[str, str]:
    """In every (model, task) panel of cnn_vit, some adaptive ldfa rule (local, normative, q_only,
    oja) at a tested r from d to ``ABOUT_D`` d reaches bp's final test accuracy less
    ``ACCURACY_MARGIN``; both a CNN and a ViT must have run.

    Verdicts: "not run" without results; "inconclusive" when a panel lacks bp, when bp itself stayed
    within ``LEARNT_MARGIN`` of chance, when only one of the two model families ran, when the run
    is shorter than ``MIN_EPOCHS`` epochs, or when a panel misses the margin by less than
    ``NOISE_SE`` standard errors of the test set (binomial; with one seed nothing else measures the
    noise); "supported" when every panel meets the criterion, "not supported" when at least one
    misses it by more (the sentence names which).
    """
    if results is None:
        return _not_run("cnn_vit")
    panels = results["panels"]
    epochs = _epochs(config)
    cfg = config or {}
    sizes = []
    for model in dict.fromkeys(p["model"] for p in panels):
        weights = next(p["weights"] for p in panels if p["model"] == model)
        sizes.append(f"{_MODEL_NAMES.get(model, model)} ~{weights / 1000:.0f}k weights")
    tasks = ", ".join(f"{p}" for p in dict.fromkeys(
        f"{q['task']} (d = {q['task_dim']})" for q in panels))
    scale = (f"{'; '.join(sizes)}; {tasks}; {epochs or '?'} epochs, {_seeds(cfg)}, final-epoch "
             "accuracy: small networks, not the authors' CIFAR-10 VGG and ViT-384")
    parts, passed, failed, unlearnt, noisy = [], [], [], [], []
    for p in panels:
        name = f"{_MODEL_NAMES.get(p['model'], p['model'])} on {p['task']}"
        d = int(p["task_dim"])
        bp = _num(p["references"].get("bp", {}).get("test_accuracy"))
        if bp is None:
            return "inconclusive", f"{name}: no bp reference (or it failed); tested on {scale}"
        fa = _num(p["references"].get("fa", {}).get("test_accuracy"))
        chance = float(p.get("chance") or 1.0 / d)
        best, best_at, fixed = None, None, None
        for sub, entries in p["ldfa"].items():
            near = [e for e in entries if d <= e["rank"] <= ABOUT_D * d]
            values = [(_num(e["test_accuracy"]), e["rank"]) for e in near]
            values = [(v, r) for v, r in values if v is not None]
            if not values:
                continue
            v, r = max(values)
            if sub == "fixed":
                fixed = (v, r)
            elif sub in ADAPTIVE and (best is None or v > best):
                best, best_at = v, (sub, r)
        text = f"{name}: bp {_pct(bp)}"
        if fa is not None:
            text += f", fa {_pct(fa)}"
        if best is not None:
            text += f", best adaptive ldfa at r in [{d}, {ABOUT_D * d}] {_pct(best)} ({best_at[0]}, r = {best_at[1]})"
        if fixed is not None:
            text += f", fixed {_pct(fixed[0])} (r = {fixed[1]})"
        parts.append(text)
        n_test = p.get("n_test")
        noise = (NOISE_SE * math.sqrt(2 * bp * (1 - bp) / n_test)
                 if isinstance(n_test, int) and n_test > 0 else 0.0)
        if bp - chance < LEARNT_MARGIN:
            unlearnt.append(name)
        elif best is not None and best >= bp - ACCURACY_MARGIN:
            passed.append(name)
        elif best is not None and best >= bp - ACCURACY_MARGIN - noise:
            noisy.append(f"{name} (misses by {100 * (bp - ACCURACY_MARGIN - best):.1f} points; "
                         f"{NOISE_SE:g} SE of {n_test} test samples: {100 * noise:.1f})")
        else:
            failed.append(name)
    numbers = "; ".join(parts)
    criterion = (f"Criterion: in every panel an adaptive rule (local, normative, q_only) at some tested "
                 f"r from d to {ABOUT_D}d within {ACCURACY_MARGIN * 100:.0f} points of bp")
    families = {p["model"] for p in panels}
    if unlearnt:
        return "inconclusive", (f"{numbers}. bp stayed within {LEARNT_MARGIN * 100:.0f} points of chance "
                                f"on {', '.join(unlearnt)}, which therefore cannot tell rules apart. "
                                f"{criterion}. Tested on {scale}")
    if not {"cnn", "vit"} <= families:
        return "inconclusive", (f"{numbers}. Only {', '.join(sorted(families))} ran; the claim is about "
                                f"CNNs and transformers. Tested on {scale}")
    short = _short(cfg)
    if short:
        return "inconclusive", f"{numbers}. {criterion}; {short}. Tested on {scale}"
    if noisy and not failed:
        return "inconclusive", (f"{numbers}. {criterion}: met on {', '.join(passed) or 'no panel'}; "
                                f"missed within the test set's sampling noise on {', '.join(noisy)}. "
                                f"Tested on {scale}")
    if failed:
        return "not supported", (f"{numbers}. {criterion}: not met on {', '.join(failed)}"
                                 f"{' (met on ' + ', '.join(passed) + ')' if passed else ''}. "
                                 f"Tested on {scale}")
    return "supported", f"{numbers}. {criterion}: met on every panel. Tested on {scale}"


#: Claim 6: the paper's figure for the saving of total training compute ("over 20 %"), at its scale.
PAPER_SAVING = 0.20


def compute_saved(results: Mapping | None, config: Mapping | None = None) -> tuple[str, str]:
    """Per model, some adaptive ldfa condition ends within ``ACCURACY_MARGIN`` of bp's final test
    accuracy and needs fewer counted FLOPs than bp to reach 90 % of its final accuracy (the paper's
    measure: epochs to 90 % x steps x FLOPs per step). The paper's ">20 %" is a ViT at CIFAR-10
    scale; the sentence states the savings measured on the small models, their upper bound from the
    counts, and the paper-scale ViT's per-step saving (counted, not trained)."""
    if results is None:
        return _not_run("compute_to_accuracy")
    frac = _num(results.get("fraction")) or 0.9
    models = results["models"]
    parts, good, bad, best_overall = [], [], [], None
    for name, m in models.items():
        conds = m["conditions"]
        bp = next((c for c in conds if c["rule"] == "bp"), None)
        bp_acc = _num(bp["mean"]["final_accuracy"]) if bp else None
        bound = _num(m.get("bound", {}).get("fraction"))
        if bp_acc is None:
            parts.append(f"{name}: no bp reference")
            bad.append(name)
            continue
        best = None  # (saving, label, accuracy) of the cheapest condition without loss of accuracy
        for c in conds:
            if c["rule"] == "bp" or c.get("subspace") not in ADAPTIVE:
                continue
            acc = _num(c["mean"]["final_accuracy"])
            rel = _num((c.get("relative_to_bp") or {}).get("flops_to_fraction"))
            if acc is None or rel is None or acc < bp_acc - ACCURACY_MARGIN:
                continue
            if best is None or 1 - rel > best[0]:
                best = (1 - rel, c["label"], acc)
        text = f"{name} (bp {_pct(bp_acc)}; bound {_pct(bound)})"
        if best is None or best[0] <= 0:
            adaptive = [c for c in conds if c["rule"] != "bp" and c.get("subspace") in ADAPTIVE
                        and _num(c["mean"]["final_accuracy"]) is not None]
            closest = max(adaptive, key=lambda c: _num(c["mean"]["final_accuracy"]), default=None)
            text += ": no ldfa condition within the margin saves compute"
            if closest is not None:
                acc = _num(closest["mean"]["final_accuracy"])
                text += f" (closest: {closest['label']} at {_pct(acc)}, {100 * (bp_acc - acc):.1f} points below)"
            bad.append(name)
        else:
            text += f": {best[1]} saves {_pct(best[0])} at {_pct(best[2])}"
            good.append(name)
            best_overall = best[0] if best_overall is None else max(best_overall, best[0])
        # the measure's reference is the last epoch: say when bp was still learning there
        curve = [a for a in (bp["seeds"][0].get("test_accuracy") or []) if a is not None] if bp.get("seeds") else []
        if len(curve) > 1 and curve[-1] - curve[-2] > 0.01:
            text += (f"; bp still gained {100 * (curve[-1] - curve[-2]):.1f} points in its last epoch, so the "
                     "final accuracy is no plateau")
        parts.append(text)
    paper = results.get("paper_scale") or {}
    pm = paper.get("model") or {}
    paper_text = ""
    if paper.get("ldfa"):
        savings = ", ".join(f"{e['subspace']} r = {e['rank']} {_pct(_num(e['saving']))}" for e in paper["ldfa"])
        above = sorted({e["rank"] for e in paper["ldfa"] if (_num(e["saving"]) or 0) > PAPER_SAVING})
        paper_text = (f" At the paper's scale (ViT width {pm.get('dim', '?')}, depth {pm.get('depth', '?')}, "
                      f"batch {paper.get('batch', '?')}; counted, not trained) the per-step saving is {savings} "
                      f"(bound {_pct(_num((paper.get('bound') or {}).get('fraction')))}): at equal epochs, above "
                      f"{PAPER_SAVING:.0%} " + (f"only at r in {above}" if above else "at none of these ranks"))
    epochs = _epochs(config)
    n_models = len(models)
    scale = (f"4000 MNIST digits, {n_models} small model{'s' if n_models != 1 else ''} "
             f"({', '.join(models)}), {epochs if epochs is not None else '?'} epochs, {_seeds(config)}: "
             "a small proxy, not the paper's CIFAR-10/ImageNet ViT; the '>20%' itself is not tested by training")
    crit = (f"Criterion: per model, an adaptive ldfa condition within {ACCURACY_MARGIN * 100:.0f} points of bp's "
            f"final accuracy needs fewer counted FLOPs than bp to reach {frac:g} x its final accuracy")
    numbers = "FLOPs to 90% of the final accuracy against bp: " + "; ".join(parts)
    over = ("" if best_overall is None else
            f"; the largest saving is {_pct(best_overall)} ({'above' if best_overall > PAPER_SAVING else 'below'} "
            f"the paper's {PAPER_SAVING:.0%})")
    short = _short(config)
    if short:
        return "inconclusive", f"{numbers}{over}. {short}.{paper_text}. Tested on {scale}"
    if good and not bad:
        verdict, what = "supported", "met by every model"
    elif not good:
        verdict, what = "not supported", "met by no model"
    else:
        verdict, what = "inconclusive", f"{_who(good)} it, not {', '.join(bad)}"
    return verdict, f"{numbers}{over}. {crit}: {what}.{paper_text}. Tested on {scale}"


#: Receptive fields: bp's test accuracy must beat chance (1/d) by this much, else the networks have
#: not learnt enough for their retinas to tell anything ...
RF_LEARNT_MARGIN = 0.15
#: ... an index (in [0, 1]) at the lowest tested r must differ from bp's by at least this much ...
RF_INDEX_MARGIN = 0.05
#: ... and by at least this many times the seed spread sqrt(sd_r^2 + sd_bp^2).
RF_SPREAD_FACTOR = 2.0

RF_PROXY = "natural-image patches, a proxy for the authors' grayscale CIFAR-10"
RF_INDEX_NAMES = {"centre_surround": "centre-surround index", "orientation": "orientation index"}


def feedback_rank_reshapes_fields(results: Mapping | None, config: Mapping | None = None) -> tuple[str, str]:
    """The retina's fields at the lowest tested rank differ from bp's in the centre-surround or the
    orientation index (mean over the 32 retina output channels, then over seeds) by at least
    ``RF_INDEX_MARGIN`` and ``RF_SPREAD_FACTOR`` x the seed spread, in networks that learnt (bp at
    least ``RF_LEARNT_MARGIN`` above chance)."""
    if results is None:
        return _not_run("receptive_fields")
    cfg = config or {}
    conds = {c["label"]: c for c in results["conditions"]}  # a changed format: judge() says so
    ranked = sorted((c for c in conds.values() if isinstance(c.get("rank"), int)), key=lambda c: c["rank"])
    d = cfg.get("classes", 10)
    scale = (f"{RF_PROXY} (d = {d}, {cfg.get('image_size', '?')} px), retina 1 -> 32 -> "
             f"{results.get('channels', '?')} channels and {cfg.get('vvs_depth', '?')} VVS conv(s), "
             f"rank-r feedback ({results.get('subspace', '?')}) on {results.get('ldfa_layer', 'vvs.0')} only, "
             f"{cfg.get('epochs', '?')} epoch{'' if cfg.get('epochs') == 1 else 's'}, {_seeds(cfg)}; a small proxy, not the paper's 120-epoch "
             f"CIFAR-10 runs")
    bp = conds.get("bp")
    if bp is None or not ranked:
        return "inconclusive", f"the receptive_fields run lacks bp or any ldfa rank; tested on {scale}"
    low, high = ranked[0], ranked[-1]
    acc = _num(bp.get("test_accuracy_summary"))
    chance = 1.0 / d
    parts, moved = [], []
    for key, name in RF_INDEX_NAMES.items():
        b, lo, hi = (_num(c.get(f"{key}_summary")) for c in (bp, low, high))
        sd_b = (bp.get(f"{key}_summary") or {}).get("sd") or 0.0
        sd_l = (low.get(f"{key}_summary") or {}).get("sd") or 0.0
        if b is None or lo is None:
            parts.append(f"{name}: n/a")
            continue
        delta = lo - b
        spread = math.hypot(sd_b, sd_l)
        parts.append(f"{name} bp {_f(b)} +- {_f(sd_b, 2)}, r = {low['rank']} {_f(lo)} +- {_f(sd_l, 2)} "
                     f"(difference {delta:+.3f}, seed spread {spread:.3f})"
                     + (f", r = {high['rank']} {_f(hi)}" if hi is not None and high is not low else ""))
        if abs(delta) >= RF_INDEX_MARGIN and abs(delta) >= RF_SPREAD_FACTOR * spread:
            moved.append(f"{name} {'higher' if delta > 0 else 'lower'} at r = {low['rank']}")
    init = results.get("at_init") or {}
    before = [f"{name} {_f(_num(init.get(f'{key}_summary')))}" for key, name in RF_INDEX_NAMES.items()
              if _num(init.get(f"{key}_summary")) is not None]
    if before:
        parts.append(f"untrained retina: {', '.join(before)}")
    numbers = (f"{'; '.join(parts)}; bp test accuracy {_f(acc)} (chance {chance:.2f}). Criterion: an index "
               f"at the lowest r differs from bp's by >= {RF_INDEX_MARGIN} and >= {RF_SPREAD_FACTOR:g}x "
               f"the seed spread, with bp >= chance + {RF_LEARNT_MARGIN}")
    seeds = len(bp.get("seeds", []))
    if acc is None or acc < chance + RF_LEARNT_MARGIN:
        return "inconclusive", (f"{numbers}; bp reached only {_f(acc)}, so the networks (and their "
                                f"retinas) are barely trained. Tested on {scale}")
    if seeds < 2:
        return "inconclusive", f"{numbers}; one seed gives no spread. Tested on {scale}"
    if moved:
        return "supported", f"{numbers}: {', '.join(moved)} than with bp. Tested on {scale}"
    return "not supported", (f"{numbers}: neither index separates the low-rank fields from bp's. "
                             f"Tested on {scale}")


__all__ = ["feedback_rank_reshapes_fields"]


CLAIMS = (
    Claim("rank_d", "An error of dimension about the task dimension d trains as well as backprop.",
          "accuracy_vs_rank", rank_d_matches_bp),
    Claim("scales_with_d", "The feedback rank needed scales with the task dimension d, not with the width.",
          "rank_vs_task_dim", rank_scales_with_d),
    Claim("spurious", "Fixed, task-agnostic low-rank feedback leads to spurious solutions.",
          "linear_theory", fixed_feedback_spurious),
    Claim("alignment", "Learned feedback aligns with W^T / captures the error subspace.",
          "alignment", learned_feedback_aligns),
    Claim("not_narrow", "A low-dimensional error is not a narrow network.",
          "width_vs_rank", low_rank_not_narrow),
    Claim("cnn_vit", "An error of dimension about d trains CNNs and transformers about as well as backprop.",
          "cnn_vit", cnn_vit_matches_bp),
    Claim("compute", "Low-rank feedback reduces total training compute (over 20% at the paper's scale) "
          "with no loss of accuracy.", "compute_to_accuracy", compute_saved),
    Claim("receptive_fields", "The dimensionality of the feedback reshapes receptive fields.",
          "receptive_fields", feedback_rank_reshapes_fields),
)


def judge(claim: Claim, results: Any, config: Mapping | None = None,
          status: str = "complete") -> tuple[str, str]:
    """Run ``claim.judge`` defensively: a run that did not finish, or numbers in a format the judge
    does not know, give "inconclusive" with the reason instead of an exception."""
    if results is None:
        return claim.judge(None, config)
    if status not in ("complete", "done", "ok"):
        return "inconclusive", f"the latest {claim.analysis} run is {status!r}, not complete"
    if not isinstance(results, Mapping):
        return "inconclusive", f"{claim.analysis}'s results.json is not a JSON object"
    try:
        verdict, sentence = claim.judge(results, config)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, ZeroDivisionError) as err:
        detail = f"{type(err).__name__}: {err}"
        return "inconclusive", (f"{claim.analysis}'s results.json does not hold the numbers this claim reads "
                                f"({detail}); has the analysis's format changed?")
    if verdict not in VERDICTS:
        raise ValueError(f"claim {claim.key} returned verdict {verdict!r}; valid: {', '.join(VERDICTS)}")
    return verdict, sentence
