"""A synthetic rural and small-business economy whose defaults emerge from cash flows.

Python API: `simulate(SimParams(...), raw_dir, truth_dir)` returns a SimReport; the CLI
verb is `fieldbank simulate` (commands.py). See docs/simulator.md for the model.
"""

from fieldbank.simulate.engine import SimReport, simulate
from fieldbank.simulate.params import SimParams

__all__ = ["SimParams", "SimReport", "simulate"]
