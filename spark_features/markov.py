"""The `markov_sql` baseline in Spark SQL: top-N next items per previous item, per edge.

P(next | prev) comes from transition counts; a previous item with fewer than N successors is
filled with the edge's most popular items, and prev_idx = -1 holds the popularity top-N used
for items never seen as a previous item. `source` says which rule produced each row, and
`prob` is P(next | prev) for 'transition' rows and the item's share of the edge's views for
'popularity' rows. Ties are broken by the smaller item_idx, so the output is deterministic.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

MARKOV_SQL = """
WITH t AS (
  SELECT edge_id, prev_idx, next_idx, count,
         count / SUM(count) OVER (PARTITION BY edge_id, prev_idx) AS prob,
         ROW_NUMBER() OVER (PARTITION BY edge_id, prev_idx ORDER BY count DESC, next_idx) AS r
  FROM {transitions}
),
p AS (
  SELECT edge_id, item_idx AS next_idx,
         count / SUM(count) OVER (PARTITION BY edge_id) AS prob,
         ROW_NUMBER() OVER (PARTITION BY edge_id ORDER BY count DESC, item_idx) AS r
  FROM {popularity}
),
top_t AS (SELECT * FROM t WHERE r <= {n}),
top_p AS (SELECT * FROM p WHERE r <= 2 * {n}),
fill AS (
  SELECT prevs.edge_id, prevs.prev_idx, top_p.next_idx, top_p.prob, top_p.r
  FROM (SELECT DISTINCT edge_id, prev_idx FROM top_t) prevs
  JOIN top_p ON prevs.edge_id = top_p.edge_id
  LEFT ANTI JOIN top_t ON top_t.edge_id = prevs.edge_id AND top_t.prev_idx = prevs.prev_idx
                      AND top_t.next_idx = top_p.next_idx
),
candidates AS (
  SELECT edge_id, prev_idx, next_idx, prob, 'transition' AS source, 0 AS tier, r FROM top_t
  UNION ALL
  SELECT edge_id, prev_idx, next_idx, prob, 'popularity' AS source, 1 AS tier, r FROM fill
  UNION ALL
  SELECT edge_id, -1 AS prev_idx, next_idx, prob, 'popularity' AS source, 1 AS tier, r FROM top_p
),
ranked AS (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY edge_id, prev_idx ORDER BY tier, r) AS rank
  FROM candidates
)
SELECT edge_id, CAST(prev_idx AS INT) AS prev_idx, CAST(next_idx AS INT) AS next_idx,
       CAST(rank AS INT) AS rank, CAST(prob AS DOUBLE) AS prob, source
FROM ranked WHERE rank <= {n}
"""


def markov_sql(spark: SparkSession, transitions: DataFrame, popularity: DataFrame, top_n: int,
               view_prefix: str = "edge") -> DataFrame:
    """Run MARKOV_SQL over temp views of `transitions` and `popularity` (columns as written)."""
    t_view, p_view = f"{view_prefix}_transitions", f"{view_prefix}_popularity"
    transitions.createOrReplaceTempView(t_view)
    popularity.createOrReplaceTempView(p_view)
    return spark.sql(MARKOV_SQL.format(transitions=t_view, popularity=p_view, n=int(top_n)))
