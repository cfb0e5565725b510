"""The in-memory PageRank (DuckDB's path) does the same arithmetic as the join-based one
(Spark's path): same nodes, ranks within float rounding, self-loops ignored, dangling mass."""

from __future__ import annotations

import ibis
import numpy as np
import pyarrow as pa
import pytest

from fieldbank.portrait import connect
from fieldbank.portrait.graph import pagerank, pagerank_joins, pagerank_local


def _edges(seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    n_edges, n_nodes = 400, 60
    src = rng.integers(0, n_nodes, n_edges)
    dst = rng.integers(0, n_nodes - 10, n_edges)  # nodes 50-59 never receive: some only send
    src[:5] = dst[:5]  # self-loops
    ids = np.array([f"n{i:02d}" for i in range(n_nodes + 5)], dtype=object)
    src = np.concatenate([src, [n_nodes, n_nodes + 1]])  # n60, n61: only a self-loop / only a sender
    dst = np.concatenate([dst, [n_nodes, n_nodes + 2]])  # n62: only a receiver (dangling)
    return pa.table({"src": ids[src], "dst": ids[dst], "weight": rng.integers(1, 1000, len(src))})


@pytest.mark.parametrize("seed", [1, 2])
def test_local_equals_joins(seed: int) -> None:
    con = connect("duckdb")
    edges = ibis.memtable(_edges(seed))
    local = pagerank_local(con, edges).to_pyarrow().sort_by("node_id")
    joins = pagerank_joins(con, edges).to_pyarrow().sort_by("node_id")
    assert local["node_id"].equals(joins["node_id"])
    assert local["nodes_n"].equals(joins["nodes_n"])
    np.testing.assert_allclose(local["rank"].to_numpy(), joins["rank"].to_numpy(), rtol=1e-12, atol=0)
    assert abs(sum(local["rank"].to_pylist()) - 1.0) < 1e-12
    assert pagerank(con, edges).to_pyarrow().sort_by("node_id")["rank"].equals(local["rank"])  # DuckDB -> local


def test_empty_graph() -> None:
    con = connect("duckdb")
    empty = ibis.memtable(pa.table({"src": pa.array([], pa.string()), "dst": pa.array([], pa.string()),
                                    "weight": pa.array([], pa.int64())}))
    assert pagerank_local(con, empty).to_pyarrow().num_rows == 0
