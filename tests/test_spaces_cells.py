"""Cell spaces declare their DAG: live edges, the live-edge encoding, persistence, and that the
encoding matches what the NAS-Bench-201 table says about equivalent cells (skipped without it)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from test_search_ehvi import nb201_table

from archlab.spaces import Choice, PerLayer, SearchSpace, SpaceError
from archlab.spaces.cells import CellGraph
from archlab.spaces.library import NB201_OPS, cell_space

C3, C1, SK, NO, PL = "nor_conv_3x3", "nor_conv_1x1", "skip_connect", "none", "avg_pool_3x3"


def _cell(ops):
    return cell_space().validate({"edges": [{"op": o} for o in ops]})


@pytest.mark.parametrize("ops,live", [
    ([C3] * 6, [True] * 6),
    ([NO, NO, NO, C1, NO, NO], [False, False, False, True, False, False]),  # only the input -> output edge
    ([C3, NO, NO, NO, NO, SK], [False] * 6),  # node 2 is never reached: no path to the output at all
    ([NO, C3, C3, SK, NO, C1], [False, True, False, True, False, True]),  # 1 -> 2 starts at an unreached node
    ([C3, NO, NO, NO, PL, C3], [True, False, False, False, True, False]),  # 2 -> 3 leaves an unreached node
])
def test_live_edges_of_nb201_cells(ops, live):
    space = cell_space()
    assert space.graph.pairs == [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]
    assert space.graph.live(ops) == live
    row = space.structure_features([_cell(ops)])[0]
    F, counts = row[:6 * len(NB201_OPS)].reshape(6, len(NB201_OPS)), row[6 * len(NB201_OPS):]
    assert F.sum() == sum(live)
    for k, o in enumerate(ops):
        assert F[k, NB201_OPS.index(o)] == float(live[k])
    counted = [o for o in NB201_OPS if o != NO]
    assert space.graph.counted == tuple(counted) and len(counts) == len(counted)
    for o, c in zip(counted, counts):  # live edges per operation, at the graph's weight
        assert c == CellGraph.COUNT_WEIGHT * sum(alive and op == o for op, alive in zip(ops, live))
    assert len(space.graph.feature_names()) == len(row)


def test_cells_that_differ_only_on_dead_edges_share_their_features():
    space = cell_space()
    a, b = _cell([C3, NO, NO, C1, NO, SK]), _cell([C3, NO, PL, C1, C3, SK])
    fa, fb = space.structure_features([a, b])
    assert not np.array_equal(fa, fb)  # in b, node 1 reaches the output: 0 -> 1 and 1 -> 3 are live
    c = _cell([NO, C1, PL, C1, C3, SK])  # node 1 unreached: 1 -> 2 and 1 -> 3 are dead whatever they hold
    d = _cell([NO, C1, SK, C1, NO, SK])
    fc, fd = space.structure_features([c, d])
    assert np.array_equal(fc, fd) and fc[:30].sum() == 3
    assert np.array_equal(fc[30:], [2.0, 4.0, 0.0, 0.0])  # live: 0 -> 2 and 0 -> 3 (1x1), 2 -> 3 (skip)


def test_the_graph_is_kept_by_json_and_checked_against_the_space():
    space = cell_space("c")
    back = SearchSpace.from_json(space.to_json())
    assert back.graph == space.graph and back == space
    assert cell_space(n_edges=5).graph is None  # not n (n - 1) / 2 edges: no DAG declared
    assert cell_space(n_edges=5).structure_features([cell_space(n_edges=5).sample(0)]).shape == (1, 0)
    assert cell_space(n_edges=5).cost_features([cell_space(n_edges=5).sample(0)]).shape == (1, 0)
    assert cell_space(n_edges=10).graph.n_nodes == 5
    plain = SearchSpace("p", edges=PerLayer(3, op=Choice("a", "b")))
    with pytest.raises(SpaceError, match=r"'edges' must be a PerLayer of 6 edges"):
        plain.with_graph(CellGraph(4, ("a", "b")))
    with pytest.raises(SpaceError, match="n_nodes must be an int >= 2"):
        CellGraph(1, ("a",))
    data = json.loads(space.to_json())
    with pytest.raises(SpaceError, match="bad 'graph'"):
        SearchSpace.from_json({**data, "graph": {"ops": ["none"]}})
    start = time.monotonic()  # a received space with a huge graph is refused at once, never enumerated
    with pytest.raises(SpaceError, match=r"PerLayer of 49999995000000 edges"):
        SearchSpace.from_json({**data, "graph": {**data["graph"], "n_nodes": 10**7}})
    assert time.monotonic() - start < 1.0


def test_the_cell_family_wires_edges_in_the_graphs_order():
    from archlab.supernets.families.cell import EDGES

    assert cell_space().graph.pairs == [(src, dst) for dst, src in EDGES]


def test_equivalent_cells_have_near_equal_accuracy_on_nb201():
    _, table = nb201_table()
    from archlab.spaces import Arch

    archs = [Arch.from_json(k) for k in table.keys]
    F = table.space.structure_features(archs)
    groups: dict[bytes, list[int]] = {}
    for i, f in enumerate(F):
        groups.setdefault(f.tobytes(), []).append(i)
    assert len(groups) == 9445  # of 15,625 cells
    acc = table.columns["cifar100_acc"]
    spread = [np.std(acc[g]) for g in groups.values() if len(g) > 1]
    assert np.median(spread) < 0.5 and acc.std() > 10  # 0.33 within a class against 12.2 overall


def test_ehvi_models_cells_on_one_hot_and_live_edges():
    from archlab.search.ehvi_planner import Planner

    space = cell_space()
    cells = [_cell([NO, C1, PL, C1, C3, SK]), _cell([NO, C1, SK, C1, NO, SK])]
    onehot = space.encode_many(cells, normalized=True)
    X = Planner(space, seed=0).encode(cells)
    # live-edge one-hot, live counts of the 4 non-zero ops, then (every objective modelled) their counts on every edge
    assert X.shape == (2, onehot.shape[1] + 30 + 4 + 4)
    assert np.array_equal(X[:, :onehot.shape[1]], onehot) and np.array_equal(X[0, -38:-4], X[1, -38:-4])
    assert np.array_equal(X[:, -4:], space.cost_features(cells)) and not np.array_equal(X[0, -4:], X[1, -4:])
    assert np.array_equal(space.cost_features(cells), CellGraph.COUNT_WEIGHT * np.array([[1, 2, 1, 1], [2, 2, 0, 0]]))
    cheap = Planner(space, seed=0, known={1: lambda archs: np.zeros(len(archs))}).encode(cells)
    assert np.array_equal(cheap, X[:, :-4])  # a cheap objective given: the accuracy model keeps live structure only
    assert Planner(space, seed=0, structure=False).encode(cells).shape == onehot.shape
