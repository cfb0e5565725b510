"""A small simulated economy shared by the simulator's tests (built once per test session)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fieldbank.simulate import SimParams, SimReport, simulate


@dataclass
class SimRun:
    params: SimParams
    report: SimReport
    raw: Path
    truth: Path

    def table(self, name: str):
        return pq.read_table(self.raw / name)

    def truth_table(self, name: str):
        return pq.read_table(self.truth / f"{name}.parquet")


def run_sim(root: Path, **kwargs) -> SimRun:
    params = SimParams(**kwargs)
    report = simulate(params, root / "raw", root / "truth", progress=False)
    return SimRun(params, report, root / "raw", root / "truth")


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> SimRun:
    # 14 months so that loans can reach 90+ DPD and every invariant has rows to bite on;
    # small files so the streaming path (several part files) is exercised too
    return run_sim(tmp_path_factory.mktemp("sim"), parties=2000, months=14, seed=3,
                   start=dt.date(2024, 3, 1), rows_per_file=300_000, chunk_parties=1_000)


@pytest.fixture(name="run_sim")
def run_sim_fixture():
    """Run the simulator into a directory: run_sim(root, parties=..., months=..., seed=...)."""
    return run_sim
