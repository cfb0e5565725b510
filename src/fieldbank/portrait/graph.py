"""PageRank by iterated joins: runs on any Ibis backend (no graph library, no UDF).

Each iteration is one join + one group-by over the edge list and is materialized (a DuckDB
temp table, a cached Spark DataFrame) so the expression does not grow with the iterations.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from fieldbank.portrait.engine import materialize

DAMPING = 0.85
# Error shrinks like DAMPING**k: 0.85**30 ~ 0.8% of the first step; a fixed count keeps
# both engines doing exactly the same arithmetic (no data-dependent stopping).
ITERATIONS = 30
MAX_ITERATIONS = 200


def pagerank(
    con: ibis.BaseBackend,
    edges: ir.Table,
    damping: float = DAMPING,
    iterations: int = ITERATIONS,
) -> ir.Table:
    """Weighted PageRank of a directed graph given as (src, dst, weight > 0) rows.

    Returns (node_id, rank, nodes_n); ranks sum to 1 over the nodes. Rank flows along edges
    in proportion to weight; nodes without out-edges spread theirs evenly (dangling mass).
    """
    assert 0 < damping < 1 and 1 <= iterations <= MAX_ITERATIONS
    e = edges.group_by("src", "dst").aggregate(weight=edges.weight.sum().cast("float64"))
    e = e.filter(e.src != e.dst)  # a self-loop is not an endorsement
    out_w = e.group_by(node_id=e.src).aggregate(out_weight=e.weight.sum())
    frac = e.join(out_w, e.src == out_w.node_id).select(src=e.src, dst=e.dst, frac=e.weight / out_w.out_weight)
    frac = materialize(con, frac)
    nodes = edges.select(node_id=edges.src).union(edges.select(node_id=edges.dst)).distinct()
    nodes = nodes.left_join(out_w, "node_id").select("node_id", "out_weight")
    meta = nodes.aggregate(nodes_n=nodes.count().cast("float64"))
    nodes = nodes.cross_join(meta)
    rank = materialize(con, nodes.mutate(rank=1.0 / nodes.nodes_n))
    for _ in range(iterations):
        contrib = frac.join(rank, frac.src == rank.node_id).group_by(node_id=frac.dst).aggregate(
            inflow=(rank.rank * frac.frac).sum()
        )
        dangling = rank.filter(rank.out_weight.isnull()).aggregate(dangling=rank.rank.sum())
        nxt = rank.left_join(contrib, "node_id").cross_join(dangling)
        nxt = nxt.select(
            node_id=nxt.node_id,
            out_weight=nxt.out_weight,
            nodes_n=nxt.nodes_n,
            rank=(1.0 - damping) / nxt.nodes_n
            + damping * (nxt.inflow.fill_null(0.0) + nxt.dangling.fill_null(0.0) / nxt.nodes_n),
        )
        rank = materialize(con, nxt)
    return rank.select("node_id", "rank", "nodes_n")
