"""The lake: validated, month-partitioned Parquet event tables (see docs/ingest.md).

- `fieldbank.lake.ingest.ingest(src, settings)`: validate raw files, land good rows, quarantine bad ones.
- `fieldbank.lake.read`: `lake_relation`, `lake_files`, `lake_glob`, `read_lake_table` for later stages.
- `fieldbank.lake.commands.ingest_command`: the `fieldbank ingest` CLI verb.
"""
