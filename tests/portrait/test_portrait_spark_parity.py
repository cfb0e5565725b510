"""One definition, two engines: the portrait on PySpark (local mode) equals the one on DuckDB
(counts, sums and strings exactly, floats within 1e-9 relative)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from portrait_handmade import AS_OF, assert_same_portrait, hand_tables

from fieldbank.portrait import connect, execute_portrait, load_inputs
from fieldbank.portrait.testing import synthetic_tables, write_lake_table

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    pytest.importorskip("pyspark")
    from fieldbank.portrait.engine import spark_session

    session = spark_session()
    yield session
    session.stop()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    hand = hand_tables()
    synth = synthetic_tables(80, 4000, dt.date(2024, 9, 1), 300, seed=31)
    lake = tmp_path_factory.mktemp("parity") / "lake"
    for name in hand:
        write_lake_table(lake, name, pa.concat_tables([hand[name], synth[name]]))
    return lake


def test_spark_equals_duckdb(spark: object, lake: Path) -> None:
    duck = load_inputs(connect("duckdb"), lake, use_rollups=True)
    sprk = load_inputs(connect("spark", spark=spark), lake, use_rollups=True)
    expected = execute_portrait(duck, AS_OF)
    got = execute_portrait(sprk, AS_OF)
    assert got.num_rows == expected.num_rows > 80
    assert_same_portrait(got, expected, rel=1e-9)
