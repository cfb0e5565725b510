"""What an ingest run did: per file, per table, per rule; rendered as rich tables."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable


@dataclass
class Violation:
    """One broken rule on one input row (the report shows a few; the quarantine has all)."""

    file: str
    row: int  # 1-based data row (CSV: header not counted; Parquet: row in the file)
    column: str | None
    value: str | None
    rule: str
    reason: str

    def __str__(self) -> str:
        column = self.column if self.column is not None else "-"
        return f"{self.file} row {self.row} column {column} value {self.value!r}: {self.rule}: {self.reason}"


@dataclass
class FileReport:
    path: str
    format: str
    sha256: str
    status: str  # "ingested" | "skipped" (already ingested) | "rejected" (nothing of it landed)
    rows_read: int = 0
    rows_landed: int = 0
    rows_quarantined: int = 0
    rows_skipped: int = 0
    error: str | None = None  # file-level problem, e.g. unreadable, malformed line, missing column
    note: str | None = None  # why a file was skipped


@dataclass
class RuleCount:
    rule: str
    column: str | None
    rows: int  # rows that broke this rule (a row may break several)


@dataclass
class TableReport:
    table: str
    batch_ids: list[str] = field(default_factory=list)
    files: list[FileReport] = field(default_factory=list)
    rows_read: int = 0
    rows_landed: int = 0
    rows_quarantined: int = 0
    rows_skipped: int = 0  # identical rows already in the lake or repeated in the batch
    rule_counts: list[RuleCount] = field(default_factory=list)
    examples: list[Violation] = field(default_factory=list)
    quarantine_files: list[str] = field(default_factory=list)
    seconds_by_step: dict[str, float] = field(
        default_factory=dict
    )  # checksum, read, rules, keys, write, publish

    def add_seconds(self, step: str, seconds: float) -> None:
        self.seconds_by_step[step] = self.seconds_by_step.get(step, 0.0) + seconds

    def check(self) -> None:
        """The accounting invariant: every row read is landed, quarantined or skipped."""
        assert self.rows_read == self.rows_landed + self.rows_quarantined + self.rows_skipped, self
        assert self.rows_read == sum(f.rows_read for f in self.files), self
        assert self.rows_landed == sum(f.rows_landed for f in self.files), self
        assert self.rows_quarantined == sum(f.rows_quarantined for f in self.files), self

    def add_rule_count(self, rule: str, column: str | None, rows: int) -> None:
        for rc in self.rule_counts:
            if rc.rule == rule and rc.column == column:
                rc.rows += rows
                return
        self.rule_counts.append(RuleCount(rule, column, rows))


@dataclass
class IngestReport:
    src: str
    lake_dir: str
    quarantine_dir: str
    tables: list[TableReport] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # entries of SRC that are not table files
    recovered: list[str] = field(default_factory=list)  # what crash recovery did first
    seconds: float = 0.0

    @property
    def rows_read(self) -> int:
        return sum(t.rows_read for t in self.tables)

    @property
    def rows_landed(self) -> int:
        return sum(t.rows_landed for t in self.tables)

    @property
    def rows_quarantined(self) -> int:
        return sum(t.rows_quarantined for t in self.tables)

    @property
    def rows_skipped(self) -> int:
        return sum(t.rows_skipped for t in self.tables)

    @property
    def files_rejected(self) -> list[FileReport]:
        return [f for t in self.tables for f in t.files if f.status == "rejected"]

    @property
    def clean(self) -> bool:
        """Nothing quarantined and no file rejected."""
        return self.rows_quarantined == 0 and not self.files_rejected

    def to_dict(self) -> dict:
        """Everything in the report, plus the totals, for --report-json and pipelines."""
        out = asdict(self)
        out.update(
            rows_read=self.rows_read,
            rows_landed=self.rows_landed,
            rows_quarantined=self.rows_quarantined,
            rows_skipped=self.rows_skipped,
            clean=self.clean,
        )
        return out

    def table(self, name: str) -> TableReport:
        for t in self.tables:
            if t.table == name:
                return t
        raise KeyError(name)

    def summary(self) -> str:
        files = sum(len(t.files) for t in self.tables)
        skipped_files = sum(1 for t in self.tables for f in t.files if f.status == "skipped")
        rate = self.rows_read / self.seconds if self.seconds > 0 else 0.0
        return (
            f"ingest: {files} files ({skipped_files} already ingested, {len(self.files_rejected)} rejected), "
            f"{self.rows_read:,} rows read = {self.rows_landed:,} landed + {self.rows_quarantined:,} quarantined "
            f"+ {self.rows_skipped:,} already in lake, in {self.seconds:.1f} s ({rate:,.0f} rows/s)"
        )

    def render(self, console: Console) -> None:
        totals = RichTable(title="ingest: rows per table")
        for col in (
            "table",
            "files",
            "read",
            "landed",
            "quarantined",
            "already in lake",
            "batches",
        ):
            totals.add_column(col, justify="left" if col == "table" else "right")
        for t in self.tables:
            totals.add_row(
                t.table,
                str(len(t.files)),
                f"{t.rows_read:,}",
                f"{t.rows_landed:,}",
                f"[red]{t.rows_quarantined:,}[/red]" if t.rows_quarantined else "0",
                f"{t.rows_skipped:,}",
                str(len(t.batch_ids)),
            )
        console.print(totals)
        rules = [(t.table, rc) for t in self.tables for rc in t.rule_counts]
        if rules:
            rt = RichTable(title="quarantined rows per rule (a row can break several rules)")
            for col in ("table", "rule", "column", "rows"):
                rt.add_column(col, justify="right" if col == "rows" else "left")
            for table, rc in rules:
                rt.add_row(table, rc.rule, rc.column or "-", f"{rc.rows:,}")
            console.print(rt)
        for f in (f for t in self.tables for f in t.files if f.error):
            console.print(f"[red]{f.status}[/red] {f.path}: {f.error}")
        examples = [v for t in self.tables for v in t.examples]
        if examples:
            console.print(
                f"[yellow]first {len(examples)} violations[/yellow] (all are in the quarantine):"
            )
            for v in examples:
                console.print(f"  {v}", markup=False, highlight=False)
        for t in self.tables:
            for qf in t.quarantine_files:
                console.print(f"quarantine: {qf}")
        for line in self.recovered:
            console.print(f"[yellow]recovered[/yellow]: {line}")
        for line in self.ignored:
            console.print(f"[yellow]ignored[/yellow]: {line}")
        console.print(self.summary())


def relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
