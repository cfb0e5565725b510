"""The model's view of a table: which columns, numeric or categorical, and their levels.

Recorded at training and applied again at scoring, so a category a model never saw, or a
column that went missing, is handled the same way every time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

MAX_CATEGORY_LEVELS = 200  # a "categorical" column with more levels is almost surely an ID


@dataclass(frozen=True)
class FeatureSpec:
    numeric: tuple[str, ...]
    categorical: dict[str, tuple[str, ...]] = field(default_factory=dict)  # column -> levels
    monotone: dict[str, int] = field(default_factory=dict)  # column -> +1 (more = riskier) / -1

    @property
    def columns(self) -> list[str]:
        return list(self.numeric) + list(self.categorical)

    @classmethod
    def infer(cls, frame: pd.DataFrame, monotone: dict[str, int] | None = None) -> "FeatureSpec":
        """Numeric columns stay numeric; every other column is categorical with its seen levels."""
        numeric, categorical = [], {}
        for col in frame.columns:
            if pd.api.types.is_bool_dtype(frame[col]) or pd.api.types.is_numeric_dtype(frame[col]):
                numeric.append(col)
            else:
                levels = sorted(frame[col].dropna().astype(str).unique().tolist())
                if len(levels) > MAX_CATEGORY_LEVELS:
                    raise ValueError(
                        f"column {col!r}: {len(levels)} distinct text values, more than the "
                        f"{MAX_CATEGORY_LEVELS} a categorical feature may have; drop it (--drop {col}) "
                        "if it is an identifier"
                    )
                categorical[col] = tuple(levels)
        monotone = dict(monotone or {})
        for col in monotone:
            assert col in numeric, f"monotone constraint on non-numeric column {col!r}"
        return cls(tuple(numeric), categorical, monotone)

    def frame(self, data: pd.DataFrame) -> pd.DataFrame:
        """The columns in training order with training dtypes; unseen categories become missing."""
        missing = [c for c in self.columns if c not in data.columns]
        if missing:
            raise ValueError(f"input lacks the model's columns {missing}")
        # Build every column first and the frame once: inserting hundreds of columns one by one
        # fragments the frame (pandas' PerformanceWarning) and costs seconds on wide tables.
        columns: dict[str, object] = {}
        for col in self.numeric:
            columns[col] = pd.to_numeric(data[col], errors="raise").astype("float64")
        for col, levels in self.categorical.items():
            values = data[col].astype("string").astype(object)
            known = values.isin(levels) & data[col].notna()
            columns[col] = pd.Categorical(values.where(known, None), categories=list(levels))
        return pd.DataFrame(columns, index=data.index)

    def to_json(self) -> dict:
        return {"numeric": list(self.numeric), "categorical": {k: list(v) for k, v in self.categorical.items()},
                "monotone": self.monotone}

    @classmethod
    def from_json(cls, d: dict) -> "FeatureSpec":
        return cls(tuple(d["numeric"]), {k: tuple(v) for k, v in d["categorical"].items()}, dict(d["monotone"]))
