"""The append-only latency table (``latency.parquet``) of a run directory.

Rows are never changed; ``append`` rewrites the file atomically with the new rows after the
old ones (tables are small: one row per measured architecture), so a killed run leaves the
previous complete table. The search space's JSON and the table format ride in the parquet
schema metadata, so a predictor can be fitted from the table alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from archlab.core.io import atomic_open
from archlab.core.layout import RunLayout
from archlab.spaces import SearchSpace

from .data import SPACE_META_KEY
from .errors import ProfilingError

TABLE_FORMAT = b"1"
FORMAT_KEY = b"archlab.latency_table"


class LatencyTable:
    """``latency.parquet``: read, list what is measured, append rows atomically."""

    def __init__(self, path: str | Path, space: SearchSpace | None = None) -> None:
        p = Path(path)
        self.path = RunLayout(p).latency_table if p.suffix != ".parquet" else p
        self.space = space

    def exists(self) -> bool:
        return self.path.is_file()

    def read(self) -> Any:
        """The table as a DataFrame (empty when there is none yet)."""
        import pandas as pd
        import pyarrow.parquet as pq

        if not self.exists():
            return pd.DataFrame()
        try:
            table = pq.read_table(self.path)
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise ProfilingError(f"{self.path}: cannot read the latency table ({exc})") from None
        meta = table.schema.metadata or {}
        if meta.get(FORMAT_KEY) != TABLE_FORMAT:
            raise ProfilingError(f"{self.path}: not an archlab latency table")
        stored = meta.get(SPACE_META_KEY)
        if self.space is not None and stored is not None:
            other = SearchSpace.from_json(stored.decode())
            if other != self.space:
                raise ProfilingError(
                    f"{self.path}: measured for space {other.name!r} (fingerprint {other.fingerprint}), "
                    f"not {self.space.name!r} ({self.space.fingerprint}); use another run directory")
        return table.to_pandas()

    def measured(self, target_spec: str) -> set[str]:
        """Arch keys already measured (kind ``arch``) on ``target_spec``."""
        df = self.read()
        if df.empty:
            return set()
        rows = df[(df["kind"] == "arch") & (df["target"] == target_spec)]
        return set(rows["arch"])

    def append(self, rows: Sequence[dict[str, Any]]) -> int:
        """Add ``rows`` after the existing ones (atomic rewrite); returns the new row count."""
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not rows:
            return len(self.read())
        old = self.read()
        new = pd.DataFrame(list(rows))
        frame = pd.concat([old, new], ignore_index=True) if not old.empty else new
        table = pa.Table.from_pandas(frame, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[FORMAT_KEY] = TABLE_FORMAT
        if self.space is not None:
            meta[SPACE_META_KEY] = self.space.to_json().encode()
        table = table.replace_schema_metadata(meta)
        with atomic_open(self.path, "wb") as fh:
            pq.write_table(table, fh)
        return len(frame)


def input_description(x: Any) -> dict[str, str]:
    return {"input_shape": json.dumps(list(x.shape)), "input_dtype": str(x.dtype).replace("torch.", "")}
