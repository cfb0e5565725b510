"""Portrait: point-in-time borrower features from the lake (Ibis on DuckDB or Spark).

    from fieldbank.portrait import connect, load_inputs, execute_portrait
    inp = load_inputs(connect("duckdb"), settings.lake_dir)
    table = execute_portrait(inp, datetime.date(2025, 6, 1))
"""

from fieldbank.portrait.catalog import Feature, catalog
from fieldbank.portrait.engine import connect, spark_session
from fieldbank.portrait.inputs import AsOf, Inputs, load_inputs
from fieldbank.portrait.pipeline import build_portrait, execute_portrait, portrait_schema, write_portrait

__all__ = [
    "AsOf",
    "Feature",
    "Inputs",
    "build_portrait",
    "catalog",
    "connect",
    "execute_portrait",
    "load_inputs",
    "portrait_schema",
    "spark_session",
    "write_portrait",
]
