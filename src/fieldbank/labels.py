"""The default label, defined once for every stage that needs it (feature report, training).

Label for (party, D): 1 if one of the party's loans reached 90+ days past due (its
`defaulted_at`) in [D, D + horizon_days), else 0. Which parties get a label is the
population:

* `open_at_d`: the party has a loan open at D (opened before D, not closed before D);
* `exposed`: the party has a loan open at some time in [D, D + horizon_days).

With `exclude_in_default`, parties already 90+ DPD at D on a loan still open are left out:
their outcome is known, so there is nothing left to predict.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pyarrow as pa

from fieldbank.portrait.engine import midnight_utc, parquet_files

DEFAULT_HORIZON_DAYS = 365
MAX_HORIZON_DAYS = 3660
POPULATIONS = ("open_at_d", "exposed")
_IN_POPULATION = {
    "open_at_d": "opened_at < $start AND (closed_at IS NULL OR closed_at >= $start)",
    "exposed": "opened_at < $end AND (closed_at IS NULL OR closed_at >= $start)",
}


def default_labels(lake_dir: Path, as_of: dt.date, horizon_days: int = DEFAULT_HORIZON_DAYS,
                   population: str = "open_at_d", exclude_in_default: bool = True) -> pa.Table:
    """(party_id string, label int8), one row per party of the population, sorted by party_id."""
    assert 1 <= horizon_days <= MAX_HORIZON_DAYS and population in POPULATIONS, (horizon_days, population)
    files = parquet_files(Path(lake_dir) / "loans")
    if not files:
        return pa.table({"party_id": pa.array([], pa.string()), "label": pa.array([], pa.int8())})
    start, end = midnight_utc(as_of), midnight_utc(as_of + dt.timedelta(days=horizon_days))
    exclusion = ""
    if exclude_in_default:
        exclusion = """AND p.party_id NOT IN (
            SELECT party_id FROM loans WHERE defaulted_at < $start AND (closed_at IS NULL OR closed_at >= $start))"""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    table = con.sql(
        f"""
        WITH loans AS (SELECT * FROM read_parquet($paths, hive_partitioning = false)),
        pop AS (SELECT DISTINCT party_id FROM loans WHERE {_IN_POPULATION[population]})
        SELECT p.party_id,
               coalesce(max(CASE WHEN l.defaulted_at >= $start AND l.defaulted_at < $end THEN 1 END), 0)::TINYINT
                   AS label
        FROM pop p JOIN loans l USING (party_id)
        WHERE TRUE {exclusion}
        GROUP BY p.party_id ORDER BY p.party_id
        """,
        params={"paths": [str(f) for f in files], "start": start, "end": end},
    ).to_arrow_table()
    con.close()
    return table
