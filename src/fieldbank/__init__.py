"""fieldbank: lend on data instead of collateral.

One package per stage of the data flow (see docs/architecture.md):
simulate -> lake (ingest) -> portrait -> risk -> decision -> bank -> monitor.
"""

__version__ = "0.1.0"
