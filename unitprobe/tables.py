"""One in-memory results object: the tables of an analysis, read and written at the edge only.

:class:`Tables` holds the result tables of one ``analyze`` call by name (the names of
:data:`unitprobe.schemas.SCHEMAS`). Figures and the report take a ``Tables`` directly; only
:meth:`Tables.write` and :meth:`Tables.read` touch the disk, and ``read`` restores every
column's dtype once, from the schema, so nothing downstream has to coerce CSV text.

Example
-------
>>> tables = Tables({"roles": roles_df})
>>> tables.write("results")  # results/roles.csv
>>> Tables.read("results")["roles"].dtypes["unit"]
dtype('int64')
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pandas as pd

from unitprobe._utils import write_csv
from unitprobe.errors import DataError
from unitprobe.schemas import SCHEMAS

__all__ = ["Tables"]


class Tables(Mapping[str, pd.DataFrame]):
    """Result tables by name; a read-only mapping.

    Parameters
    ----------
    tables : mapping of str to DataFrame
        Each name must be a table of :data:`~unitprobe.schemas.SCHEMAS`; each frame is
        coerced to its schema (columns in order, dtypes), so a ``Tables`` always holds
        well-formed tables. The frames passed in are not modified.
    """

    def __init__(self, tables: Mapping[str, pd.DataFrame] | None = None) -> None:
        self._tables: dict[str, pd.DataFrame] = {}
        for name, table in (tables or {}).items():
            if name not in SCHEMAS:
                raise DataError(f"no table named {name!r}; tables: {', '.join(SCHEMAS)}")
            try:
                self._tables[name] = SCHEMAS[name].coerce(table)
            except KeyError as err:
                raise DataError(f"{name} table is missing columns {err}") from None
            except (TypeError, ValueError) as err:
                raise DataError(f"{name} table has a value of the wrong type: {err}") from None

    def __getitem__(self, name: str) -> pd.DataFrame:
        try:
            return self._tables[name]
        except KeyError:
            have = ", ".join(self._tables) or "none"
            raise KeyError(f"no {name!r} table in these results (have: {have})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}: {len(v)} rows" for k, v in self._tables.items())
        return f"Tables({sizes})"

    def write(self, directory: str | Path) -> list[Path]:
        """Write each table as ``directory/NAME.csv``; return the paths, in table order."""
        directory = Path(directory)
        return [write_csv(t, directory / f"{name}.csv") for name, t in self._tables.items()]

    @classmethod
    def read(cls, directory: str | Path, names: tuple[str, ...] | None = None) -> Tables:
        """Read the tables a results directory holds (each ``NAME.csv`` of a known table).

        Parameters
        ----------
        directory : path
        names : tuple of str, optional
            Tables that must be there; others present are read too.

        Raises
        ------
        DataError
            A required table is missing, or a CSV cannot be read or does not fit its schema
            (the message names the file).
        """
        directory = Path(directory)
        missing = [n for n in names or () if not (directory / f"{n}.csv").is_file()]
        if missing:
            files = ", ".join(f"{n}.csv" for n in missing)
            raise DataError(f"{directory} has no {files}; is it an analyze output directory?")
        frames = {}
        for name in SCHEMAS:
            path = directory / f"{name}.csv"
            if not path.is_file():
                continue
            try:
                frames[name] = pd.read_csv(path, keep_default_na=True, encoding="utf-8")
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
                raise DataError(f"cannot read {path}: {str(err).splitlines()[0]}") from None
        try:
            return cls(frames)
        except DataError as err:
            raise DataError(f"{directory}: {err}") from None
