"""Drawing a circuit with matplotlib and networkx (see :meth:`bioplastic.Circuit.draw`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Colour of each population role.
ROLE_COLOURS = {"input": "#4c72b0", "hidden": "#55a868", "output": "#c44e52", "target": "#8172b2",
                "error": "#dd8452", "feedback": "#ccb974"}
#: Line style of each projection role.
EDGE_STYLES = {"forward": dict(color="#333333", style="solid", width=2.0),
               "feedback": dict(color="#dd8452", style="dashed", width=1.5),
               "error": dict(color="#8172b2", style="dotted", width=1.5)}


def circuit_layout(circuit) -> dict[str, tuple[float, float]]:
    """Positions: forward chain on y = 0 left to right, target/error to the right, bottlenecks below."""
    layers = circuit.layers
    pos = {name: (float(i), 0.0) for i, name in enumerate(layers)}
    L = len(layers) - 1
    for name, role in circuit.graph.nodes(data="role"):
        if role == "target":
            pos[name] = (L + 1.0, 0.8)
        elif role == "error":
            pos[name] = (L + 1.0, -0.8)
        elif role == "feedback":
            l = int(name.removeprefix("feedback"))
            pos[name] = (l - 0.5, -1.2)
    return pos


def draw_circuit(circuit, ax=None, path: str | Path | None = None):
    """Draw ``circuit`` (see :meth:`bioplastic.Circuit.draw`).

    Node area grows with log(size), so an r-neuron bottleneck is visibly narrower than the layers it
    links; labels give each population's name and size and each projection's key.
    """
    import networkx as nx

    g = circuit.graph
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(1.6 * (circuit.n_layers + 3), 4.2))
    pos = circuit_layout(circuit)
    sizes = np.array([g.nodes[n]["size"] for n in g.nodes], dtype=float)
    node_area = 250 + 350 * np.log2(sizes)
    colours = [ROLE_COLOURS[g.nodes[n]["role"]] for n in g.nodes]
    nx.draw_networkx_nodes(g, pos, ax=ax, node_size=node_area, node_color=colours, alpha=0.9)
    nx.draw_networkx_labels(g, pos, ax=ax, font_size=7,
                            labels={n: f"{n}\n{g.nodes[n]['size']}" for n in g.nodes})
    for role, style in EDGE_STYLES.items():
        edges = [(u, v) for u, v, r in g.edges(data="role") if r == role]
        nx.draw_networkx_edges(g, pos, edgelist=edges, ax=ax, edge_color=style["color"],
                               style=style["style"], width=style["width"], arrows=True,
                               arrowsize=12, node_size=node_area.mean(),
                               connectionstyle="arc3,rad=0.15")
    nx.draw_networkx_edge_labels(g, pos, ax=ax, font_size=6, label_pos=0.5,
                                 edge_labels={(u, v): n for u, v, n in g.edges(data="name")
                                              if not n.startswith("E_")},
                                 connectionstyle="arc3,rad=0.15")
    sub = f", subspace {circuit.subspace}" if circuit.rule == "ldfa" else ""
    ranks = f", ranks {list(circuit.ranks.values())}" if circuit.ranks else ""
    ax.set_title(f"{circuit.rule}{sub}{ranks}", fontsize=9)
    ax.set_axis_off()
    ax.margins(0.12)
    if path is not None:
        from ..plotting import save

        save(ax.figure, path)
    return ax


