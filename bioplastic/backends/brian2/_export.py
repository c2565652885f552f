"""Export of a built Brian2 circuit: its populations, weight stores and synapses in a readable form.

:func:`describe` reads the assembled Brian2 objects themselves (not the circuit description), so
what it prints is what runs: each group's equations as Brian2 parsed them, the code each object
runs at every presentation tick (eligibility, consolidation, loaders), which store a synapse's
weight lives in, the clocks and the constants of the namespace. :func:`render` writes it as
markdown or JSON (``runner.export()``).
"""

from __future__ import annotations

import json

import numpy as np

#: Formats :func:`render` writes.
FORMATS = ("markdown", "json")


def _code_runners(obj) -> list[dict]:
    """The ``run_regularly`` code of ``obj`` and its once-per-step subexpressions (those marked
    ``(constant over dt)``): name, clock, slot, order, code."""
    out = []
    for sub in getattr(obj, "contained_objects", []):
        if type(sub).__name__ not in ("CodeRunner", "SubexpressionUpdater"):
            continue
        code = str(getattr(sub, "abstract_code", "") or "").strip()
        out.append({"name": sub.name, "clock": sub.clock.name, "when": sub.when, "order": sub.order,
                    "code": "\n".join(line.strip() for line in code.splitlines() if line.strip())})
    return out


def _linked(obj, names=("w", "elig", "bias", "elig_b")) -> dict:
    """Linked variable -> the group that owns it (a weight store, or a population)."""
    out = {}
    for name in names:
        var = obj.variables.get(name) if hasattr(obj, "variables") else None
        owner = getattr(getattr(var, "owner", None), "name", None)
        if owner is not None and owner != obj.name:
            out[name] = owner
    return out


def describe(runner, model) -> dict:
    """A plain-data description of ``model`` built by ``runner`` (see the module docstring)."""
    circuit, g = runner.circuit, runner.circuit.graph
    p = circuit.params
    roles = dict(g.nodes(data="role"))
    data = {
        "circuit": {"rule": circuit.rule, "subspace": circuit.subspace, "sizes": circuit.sizes,
                    "ranks": circuit.ranks, "lr": p.lr, "feedback_lr": p.feedback_lr, "decay": p.decay,
                    "reciprocal": g.graph.get("reciprocal", "read")},
        "simulation": runner.simulation_facts(model),
        "namespace": {k: str(v) for k, v in model.namespace.items() if not hasattr(v, "values")},
        "populations": [], "stores": [], "synapses": [], "monitors": [], "extra": [],
        "mismatch": [{"name": name, "elements": len(group), "equations": str(group.equations).strip(),
                      "linked": _linked(group, ("wt",)), "code": _code_runners(group)}
                     for name, group in getattr(model, "mismatch", {}).items()],
    }
    for name, group in model.groups.items():
        # a spiking circuit's own populations (error relays) are named after the one they serve;
        # size: neurons per copy (a signed population's ON and OFF halves together)
        base = name if name in g.nodes else name.rsplit("_", 1)[0]
        data["populations"].append({
            "name": name, "role": roles.get(name, f"relay of {base}"), "size": len(group) // model.copies,
            "neurons": len(group),
            "equations": str(group.equations).strip(), "linked": _linked(group),
            "code": _code_runners(group)})
    for name, store in model.stores.items():
        data["stores"].append({"name": store.name, "weight": name, "elements": len(store),
                               "lr": float(np.ravel(store.lr_)[0]),
                               "decay": float(np.ravel(store.decay_)[0]),
                               "equations": str(store.equations).strip(), "code": _code_runners(store)})
    for name, syn in model.synapses.items():
        data["synapses"].append({
            "name": name, "pre": syn.source.name, "post": syn.target.name, "synapses": len(syn),
            "equations": str(syn.equations).strip(), "linked": _linked(syn), "code": _code_runners(syn),
            "summed": [{"target": f"{u.target.name}.{u.target_var.name}", "expression": u.expression,
                        "clock": u.clock.name, "when": u.when}
                       for u in getattr(syn, "summed_updaters", {}).values()]})
    for label, mon in {**getattr(model, "readout", {}), **model.monitors}.items():
        data["monitors"].append({"name": mon.name, "label": label, "source": mon.source.name,
                                 "variables": list(mon.record_variables), "clock": mon.clock.name})
    for name, obj in model.extra.items():
        entry = {"name": name, "type": type(obj).__name__, "clock": obj.clock.name}
        if hasattr(obj, "equations") and obj.equations is not None:
            entry["equations"] = str(obj.equations).strip()
        if hasattr(obj, "source") and hasattr(obj, "target"):
            entry["pre"], entry["post"] = obj.source.name, obj.target.name
        data["extra"].append(entry)
    return data


def _block(text: str) -> list[str]:
    return ["```", text or "(none)", "```"]


def render(data: dict, format: str = "markdown") -> str:
    """``data`` from :func:`describe` as ``markdown`` or ``json``; raises naming the formats."""
    if format == "json":
        return json.dumps(data, indent=1, default=str)
    if format != "markdown":
        raise ValueError(f"unknown export format {format!r}; valid options: {', '.join(FORMATS)}")
    c, sim = data["circuit"], data["simulation"]
    lines = [f"# Brian2 circuit: {c['rule']}" + (f" ({c['subspace']})" if c["subspace"] else ""),
             "",
             f"sizes {c['sizes']}, ranks {c['ranks'] or '-'}, lr {c['lr']}, feedback_lr {c['feedback_lr']}, "
             f"decay {c['decay']}, reciprocal synapses {c['reciprocal']}",
             "",
             f"{sim['summary']}; namespace " + ", ".join(f"{k} = {v}" for k, v in data["namespace"].items()),
             "", "## Populations", ""]
    for pop in data["populations"]:
        lines += [f"### {pop['name']} (role {pop['role']}, {pop['size']} neurons x {sim['copies']} copies)", ""]
        lines += _block(pop["equations"])
        for var, owner in pop["linked"].items():
            lines.append(f"- `{var}` is linked to store `{owner}`")
        for run in pop["code"]:
            lines.append(f"- every step of `{run['clock']}` ({run['when']}, order {run['order']}): "
                         f"`{run['code']}`")
        lines.append("")
    lines += ["## Weight stores (one element per synapse of the circuit)", "",
              "| store | elements | lr | decay | code at each presentation tick |", "|---|---|---|---|---|"]
    for st in data["stores"]:
        code = "<br>".join(f"`{line}`" for run in st["code"] for line in run["code"].splitlines()) or "-"
        lines.append(f"| {st['name']} | {st['elements']} | {st['lr']:g} | {st['decay']:g} | {code} |")
    if data["mismatch"]:
        lines += ["", "## Mismatch groups (normative rule; non-local: they join weight stores)", ""]
        for grp in data["mismatch"]:
            lines += [f"### {grp['name']} ({grp['elements']} elements of W^T - QP)", ""]
            lines += _block(grp["equations"])
            lines += [f"- `{var}` is linked to store `{owner}`" for var, owner in grp["linked"].items()]
            lines += [f"- every tick of `{run['clock']}` ({run['when']}, order {run['order']}): "
                      f"`{run['code']}`" for run in grp["code"]]
    lines += ["", "## Synapses", ""]
    for syn in data["synapses"]:
        lines += [f"### {syn['name']}: {syn['pre']} -> {syn['post']} ({syn['synapses']} synapses)", ""]
        lines += _block(syn["equations"])
        for var, owner in syn["linked"].items():
            lines.append(f"- `{var}` is linked to store `{owner}`")
        for s in syn["summed"]:
            lines.append(f"- sums `{s['expression']}` into `{s['target']}` on `{s['clock']}` ({s['when']})")
        for run in syn["code"]:
            lines.append(f"- every tick of `{run['clock']}` ({run['when']}, order {run['order']}): "
                         f"`{run['code']}`")
        lines.append("")
    lines += ["## Monitors", ""]
    lines += [f"- `{m['name']}`: {', '.join(m['variables'])} of `{m['source']}` on `{m['clock']}`"
              for m in data["monitors"]]
    if data["extra"]:
        lines += ["", "## Added by the user (runner.extend)", ""]
        for obj in data["extra"]:
            where = f" ({obj['pre']} -> {obj['post']})" if "pre" in obj else ""
            lines.append(f"- `{obj['name']}`: {obj['type']}{where} on `{obj['clock']}`")
            if obj.get("equations"):
                lines += _block(obj["equations"])
    return "\n".join(lines) + "\n"
