"""Read any input table or layer, map its columns, and send unusable rows to the rejects ledger.

:func:`read_table` opens CSV (delimiter sniffed), Parquet/GeoParquet, GeoPackage, GeoJSON,
Shapefile, FlatGeobuf, GPX and the same inside a ``.zip`` (through GDAL's ``/vsizip/``), and
``postgresql://host/db#schema.table`` tables (through :func:`geosup.store.read_database_table`).
It renames the source's columns to geosup's names (``columns={"vehicle_id": "Vehicle ID"}``),
parses times to tz-aware UTC, numbers, coordinates and geometry, all vectorised, and never drops a
row silently: a row that cannot be used goes to a :class:`RejectsLedger` with its 1-based row
number, its key, the reason and its raw values, so that after every read
``rows_in == rows_used + rows_rejected``. A file that cannot be used at all raises
:class:`~geosup.errors.DataSourceError` (or :class:`~geosup.errors.SchemaError`,
:class:`~geosup.errors.CRSError`) with a message a clerk can act on.

Examples
--------
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "fixes.csv"
>>> _ = path.write_text(
...     "Vehicle;When;X;Y\\n"
...     "V1;2026-01-26 08:00:00;116.39;39.90\\n"
...     "V1;not a time;116.40;39.91\\n"
...     "V2;2026-01-26 08:01:00;39.91;116.40\\n"
... )
>>> result = read_table(path, columns={"vehicle_id": "Vehicle", "time": "When", "lon": "X",
...                                    "lat": "Y"}, required=["vehicle_id", "time"],
...                     time_columns=["time"])
>>> result.rows_in, result.rows_used, result.rows_rejected
(3, 1, 2)
>>> result.frame["time"].iloc[0]  # read as Asia/Shanghai, stored in UTC
Timestamp('2026-01-26 00:00:00+0000', tz='UTC')
>>> result.ledger.frame()["reason"].tolist()
["unparseable time in column 'time'", 'lat/lon look swapped (lat is out of range but the \
swapped pair is valid); check the column mapping']
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io as _stdio
import logging
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import shapely

from geosup.errors import (
    ConfigError,
    CRSError,
    DataSourceError,
    GeometryRepairWarning,
    GeosupError,
    SchemaError,
)
from geosup.store.base import safe_url

__all__ = [
    "LEDGER_COLUMNS",
    "PERSONS_READ",
    "REPAIR_COLUMNS",
    "ROW_COLUMN",
    "UNIT_COLUMNS",
    "ReadResult",
    "RejectsLedger",
    "SourceRows",
    "convert_units",
    "normalize_unit",
    "read_table",
    "restore_raw",
]

#: How to read the persons registry (DESIGN.md section 3), shared by the checks that use it:
#: keyword arguments of :func:`read_table`.
PERSONS_READ: dict[str, Any] = {
    "required": ("person_id",),
    "id_column": "person_id",
    "time_columns": ("died_on", "moved_in_on", "moved_out_on"),
    "geometry": "none",
}

logger = logging.getLogger(__name__)

#: Columns of :meth:`RejectsLedger.frame`.
LEDGER_COLUMNS: tuple[str, ...] = ("source", "row", "key", "reason", "raw")
#: Columns of :attr:`ReadResult.repairs`.
REPAIR_COLUMNS: tuple[str, ...] = ("source", "row", "key", "reason")
#: The column that carries each row's 1-based row number in the original file.
ROW_COLUMN = "_row"

# Text a clerk's export uses for "no value" (compared stripped and lower-cased).
_NULL_TOKENS = ("", "na", "n/a", "#n/a", "nan", "nat", "null", "none")
_HEAD_BYTES = 65536
_RAW_WKT_MAX = 2000

_CSV_SUFFIXES = frozenset({".csv", ".tsv", ".txt"})
_PARQUET_SUFFIXES = frozenset({".parquet", ".geoparquet", ".pq"})
_OGR_SUFFIXES = frozenset(
    {".gpkg", ".geojson", ".json", ".geojsonl", ".geojsons", ".shp", ".fgb", ".gpx", ".kml",
     ".gml", ".sqlite", ".dbf", ".gdb"}
)
# Members of a zip archive picked automatically, and ones taken only when nothing better is there.
_ZIP_STRONG = frozenset(
    {".gpkg", ".shp", ".geojson", ".fgb", ".gpx", ".kml", ".gml", ".csv", ".tsv", ".parquet",
     ".geoparquet", ".geojsonl", ".geojsons"}
)
_ZIP_WEAK = frozenset({".json", ".txt", ".dbf", ".sqlite"})
_GPX_LAYERS = ("track_points", "route_points", "waypoints")

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an Excel .xlsx workbook)"),
    (b"SQLite format 3\x00", "an SQLite database (GeoPackage)"),
    (b"PAR1", "a Parquet file"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (.xls/.doc)"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x00\x00\x27\x0a", "an ESRI Shapefile geometry file (.shp)"),
    (b"fgb\x03", "a FlatGeobuf file"),
)
# What the first bytes of a file must be, per extension.
_EXPECTED_MAGIC: dict[str, tuple[bytes, str]] = {
    ".gpkg": (b"SQLite format 3\x00", "GeoPackage"),
    ".sqlite": (b"SQLite format 3\x00", "SQLite/SpatiaLite"),
    ".parquet": (b"PAR1", "Parquet"),
    ".geoparquet": (b"PAR1", "Parquet"),
    ".pq": (b"PAR1", "Parquet"),
    ".shp": (b"\x00\x00\x27\x0a", "ESRI Shapefile"),
    ".fgb": (b"fgb", "FlatGeobuf"),
}
_TEXT_FORMATS: dict[str, str] = {
    ".csv": "CSV",
    ".tsv": "CSV",
    ".txt": "CSV",
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".geojsonl": "GeoJSON",
    ".geojsons": "GeoJSON",
    ".gpx": "GPX",
    ".kml": "KML",
    ".gml": "GML",
}

# A time of day followed by a zone designator: the string carries its own offset.
_TZ_SUFFIX = r"\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?\s*(?:[zZ]|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$"

_TYPE_NAMES = np.array(
    ["Point", "LineString", "LinearRing", "Polygon", "MultiPoint", "MultiLineString",
     "MultiPolygon", "GeometryCollection"],
    dtype=object,
)

_PG_URL = re.compile(r"^postgres(?:ql)?://", re.IGNORECASE)

# How to declare a missing CRS, when the caller names no command-line flag.
_CRS_HINT = "crs= (e.g. read_table(path, crs='EPSG:4326'))"


# ---------------------------------------------------------------------------------------------
# The rejects ledger
# ---------------------------------------------------------------------------------------------


def _empty_ledger_frame(columns: Sequence[str]) -> pd.DataFrame:
    data: dict[str, pd.Series] = {}
    for col in columns:
        dtype = "int64" if col == "row" else object
        data[col] = pd.Series([], dtype=dtype)
    return pd.DataFrame(data)


def _raw_json(block: pd.DataFrame) -> list[str]:
    """JSON text of each row's raw values (every value as a string, missing as null)."""
    data: dict[str, np.ndarray] = {}
    for col in block.columns:
        if col == ROW_COLUMN:
            continue
        series = block[col]
        if isinstance(series.dtype, gpd.array.GeometryDtype):
            wkt = pd.Series(
                shapely.to_wkt(np.asarray(series.array, dtype=object), rounding_precision=-1),
                dtype=object,
            )
            long = wkt.str.len().fillna(0).to_numpy() > _RAW_WKT_MAX
            if long.any():
                wkt[long] = wkt[long].str.slice(0, _RAW_WKT_MAX) + "…"
            values = wkt.to_numpy(dtype=object)
        else:
            values = np.array(series.astype(str), dtype=object)
            missing = np.array(series.isna(), dtype=bool)
            if missing.any():
                values[missing] = None
        data[str(col)] = values
    if not data:
        return ["{}"] * len(block)
    text = pd.DataFrame(data).to_json(orient="records", lines=True, force_ascii=False)
    # pandas escapes "/" as "\/" (valid JSON, but harder for a clerk to read); every "/" in the
    # output is escaped that way, so the replacement is exact.
    lines = text.replace("\\/", "/").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != len(block):  # pragma: no cover - defensive
        msg = f"internal error: {len(lines)} JSON records for {len(block)} rejected rows"
        raise AssertionError(msg)
    return lines


class RejectsLedger:
    """Rows that could not be used, with why.

    Each record holds ``source`` (the input's name), ``row`` (1-based row number in the
    original file, header not counted), ``key`` (the row's id when the input has an id
    column, else ``""``), ``reason`` and ``raw`` (JSON text of the row's values as read, as
    strings). Records are added in blocks (one reason per block, or one per row), never one
    Python call per row.

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"_row": [4, 9], "card": ["C1", "C2"], "litres": ["x", "-"]})
    >>> ledger = RejectsLedger()
    >>> ledger.add("transactions.csv", rows, "litres is not a number", key_column="card")
    2
    >>> record = ledger.frame().iloc[0]
    >>> int(record["row"]), record["key"], record["raw"]
    (4, 'C1', '{"card":"C1","litres":"x"}')
    >>> ledger.counts()
    {'transactions.csv': 2}
    """

    def __init__(self) -> None:
        self._blocks: list[pd.DataFrame] = []
        self._length = 0

    def add(
        self,
        source: str,
        rows: pd.DataFrame | pd.Series | np.ndarray | pd.Index | Sequence[int],
        reason: str | Sequence[str] | np.ndarray | pd.Series,
        *,
        key_column: str | None = None,
        frame: pd.DataFrame | None = None,
    ) -> int:
        """Record a block of rejected rows.

        Parameters
        ----------
        source : str
            Name of the input the rows come from.
        rows : DataFrame, or boolean mask / index labels
            The rejected rows with their raw values. A DataFrame is taken as is; a boolean
            mask or index labels select the rows of ``frame``. The row number comes from the
            ``_row`` column when there is one, else from the (0-based integer) index + 1.
        reason : str or sequence of str
            One reason for the whole block, or one per row (same order as the rows).
        key_column : str, optional
            Column of ``rows`` holding the row's id; without it (or when the column is
            absent) the key is ``""``.
        frame : DataFrame, optional
            The table that a mask or index labels in ``rows`` refer to.

        Returns
        -------
        int
            The number of records added.
        """
        if isinstance(rows, pd.DataFrame):
            block = rows
        else:
            if frame is None:
                msg = "RejectsLedger.add needs frame= when rows is a mask or index labels"
                raise TypeError(msg)
            selector = rows.to_numpy() if isinstance(rows, pd.Series) else rows
            selector = np.asarray(selector)
            block = frame.loc[selector] if selector.dtype == bool else frame.loc[list(selector)]
        n = len(block)
        if n == 0:
            return 0
        if ROW_COLUMN in block.columns:
            row = block[ROW_COLUMN].to_numpy(dtype=np.int64)
        else:
            row = np.asarray(block.index, dtype=np.int64) + 1
        if key_column is not None and key_column in block.columns:
            keys = block[key_column]
            key = np.array(keys.astype(str), dtype=object)
            key[np.array(keys.isna(), dtype=bool)] = ""
        else:
            key = np.full(n, "", dtype=object)
        if isinstance(reason, str):
            reasons = np.full(n, reason, dtype=object)
        else:
            reasons = np.asarray(reason, dtype=object)
            if reasons.shape != (n,):
                msg = f"{reasons.size} reasons given for {n} rejected rows"
                raise ValueError(msg)
        records = pd.DataFrame(
            {
                "source": np.full(n, source, dtype=object),
                "row": row,
                "key": key,
                "reason": reasons,
                "raw": np.asarray(_raw_json(block), dtype=object),
            }
        )
        self._blocks.append(records)
        self._length += n
        return n

    def extend(self, other: RejectsLedger) -> None:
        """Append every record of another ledger.

        Parameters
        ----------
        other : RejectsLedger
            The ledger whose records are appended (it is left unchanged).
        """
        self._blocks.extend(block.copy() for block in other._blocks)
        self._length += len(other)

    def frame(self) -> pd.DataFrame:
        """All records as a DataFrame with columns ``source, row, key, reason, raw``.

        Returns
        -------
        pandas.DataFrame
            One row per rejected input row, in the order they were added.
        """
        if not self._blocks:
            return _empty_ledger_frame(LEDGER_COLUMNS)
        out = pd.concat(self._blocks, ignore_index=True)
        return out.loc[:, list(LEDGER_COLUMNS)]

    def counts(self) -> dict[str, int]:
        """Number of rejected rows per source.

        Returns
        -------
        dict of str to int
            Source name to count, in order of first appearance.
        """
        totals: dict[str, int] = {}
        for block in self._blocks:
            for source, count in block["source"].value_counts(sort=False).items():
                totals[str(source)] = totals.get(str(source), 0) + int(count)
        return totals

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        return f"RejectsLedger({self._length} rejected rows, {self.counts()})"


class SourceRows:
    """An input's rows as the source holds them, looked up by row number.

    :func:`read_table` keeps one per read (:attr:`ReadResult.source_rows`), so that a row a
    check rejects later, after mapping and conversion, still goes to the ledger with the
    source's own column names and values (:func:`restore_raw`). It holds a reference to the
    rows as loaded (CSV text stays Arrow-backed), not a copy.

    Examples
    --------
    >>> import pandas as pd
    >>> rows = SourceRows(pd.DataFrame({"_row": [1, 2], "Units": ["10.5", "7"]}), name="tx")
    >>> rows.raw([2, 5]).tolist()
    ['{"Units":"7"}', None]
    """

    def __init__(self, raw: pd.DataFrame, *, name: str) -> None:
        self.name = name
        rows = raw[ROW_COLUMN].to_numpy(dtype=np.int64)
        if len(rows) > 1 and not bool((np.diff(rows) > 0).all()):
            order = np.argsort(rows, kind="stable")
            raw, rows = raw.iloc[order], rows[order]
        self._raw = raw
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"SourceRows({self.name!r}, {len(self)} rows)"

    def raw(self, rows: np.ndarray | Sequence[int] | pd.Series) -> np.ndarray:
        """The JSON text of each row number's source values (as in the ledger's ``raw``).

        Parameters
        ----------
        rows : array of int
            1-based row numbers (``_row``).

        Returns
        -------
        numpy.ndarray of object
            One JSON text per row number; None where the source has no such row.
        """
        values = rows if isinstance(rows, pd.Series) else pd.Series(np.asarray(rows))
        wanted = pd.to_numeric(values.astype(object), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan)
        out = np.full(len(wanted), None, dtype=object)
        if not len(wanted) or not len(self._rows):
            return out
        finite = np.isfinite(wanted)
        key = np.where(finite, wanted, -1).astype(np.int64)
        pos = np.clip(np.searchsorted(self._rows, key), 0, len(self._rows) - 1)
        found = finite & (self._rows[pos] == key)
        if found.any():
            out[found] = np.asarray(_raw_json(self._raw.iloc[pos[found]]), dtype=object)
        return out


def restore_raw(
    rejects: pd.DataFrame,
    sources: Mapping[str, SourceRows] | Sequence[SourceRows] | None,
) -> pd.DataFrame:
    """Ledger rows whose ``raw`` is the source's own row, found by source and row number.

    A check sees its inputs with geosup's column names and parsed values; the rows it
    rejects are recorded from that view. This puts back, for every ledger row of a source
    in ``sources``, the row as the source holds it (its column names, its text), so that
    every reject shows the same kind of ``raw`` whichever stage made it. Rows the source
    does not know (other sources, a row number it has not got) are left as they are.

    Parameters
    ----------
    rejects : DataFrame
        Ledger rows (``source, row, key, reason, raw``).
    sources : mapping of source name to SourceRows, or sequence of SourceRows
        The inputs as read (:attr:`ReadResult.source_rows`); a sequence is keyed by each
        one's ``name``.

    Returns
    -------
    DataFrame
        A copy of ``rejects`` with ``raw`` replaced where the source row is known.

    Examples
    --------
    >>> import pandas as pd
    >>> source = SourceRows(pd.DataFrame({"_row": [1, 2], "Units": ["10.5", "x"]}), name="tx")
    >>> ledger = RejectsLedger()
    >>> mapped = pd.DataFrame({"_row": [1], "litres": [39.75]})
    >>> ledger.add("tx", mapped, "fill above the tank")
    1
    >>> restore_raw(ledger.frame(), [source])["raw"].tolist()
    ['{"Units":"10.5"}']
    """
    if sources is None or not len(rejects):
        return rejects
    if not isinstance(sources, Mapping):
        sources = {s.name: s for s in sources if s is not None}
    out = rejects.copy()
    names = out["source"].astype(str).to_numpy(dtype=object)
    raw = out["raw"].to_numpy(dtype=object).copy()
    for name, rows in sources.items():
        if rows is None:
            continue
        mine = np.flatnonzero(names == name)
        if not len(mine):
            continue
        found = rows.raw(out["row"].to_numpy()[mine])
        hit = np.array([v is not None for v in found], dtype=bool)
        raw[mine[hit]] = found[hit]
    out["raw"] = raw
    return out


@dataclass
class ReadResult:
    """What :func:`read_table` returns.

    Attributes
    ----------
    frame : DataFrame or GeoDataFrame
        The usable rows, in file order, with an int ``_row`` column holding each row's 1-based
        number in the original file (header not counted).
    source : str
        The input's name, as used in the ledger.
    rows_in, rows_used, rows_rejected : int
        Rows read, rows in ``frame``, rows added to the ledger by this read;
        ``rows_in == rows_used + rows_rejected`` always.
    ledger : RejectsLedger
        The ledger the rejected rows went to (shared when one was passed in).
    repairs : DataFrame
        Rows kept after their geometry was repaired (``source, row, key, reason``), so that
        nothing changes silently.
    source_rows : SourceRows or None
        The rows as the source holds them, by row number: a check that rejects a row later
        records its source values with :func:`restore_raw`.
    units : dict of str to str
        The units declared for columns (``{"litres": "gal"}``), as converted.
    """

    frame: pd.DataFrame
    source: str
    rows_in: int
    rows_used: int
    rows_rejected: int
    ledger: RejectsLedger
    repairs: pd.DataFrame = field(default_factory=lambda: _empty_ledger_frame(REPAIR_COLUMNS))
    source_rows: SourceRows | None = field(default=None, repr=False)
    units: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rows_in != self.rows_used + self.rows_rejected:
            msg = (
                f"{self.source}: rows in ({self.rows_in}) != rows used ({self.rows_used}) "
                f"+ rows rejected ({self.rows_rejected})"
            )
            raise AssertionError(msg)

    def summary(self) -> str:
        """One line for the CLI: ``name: N rows in = U used + R rejected``."""
        text = (
            f"{self.source}: {self.rows_in} rows in = {self.rows_used} used + "
            f"{self.rows_rejected} rejected"
        )
        if len(self.repairs):
            text += f" ({len(self.repairs)} geometries repaired)"
        return text


# ---------------------------------------------------------------------------------------------
# Loading a source into raw rows
# ---------------------------------------------------------------------------------------------


@dataclass
class _Loaded:
    raw: pd.DataFrame  # rows as read, RangeIndex, with ROW_COLUMN; may be a GeoDataFrame
    text: bool  # every attribute value is a string as written in the file
    display: str  # how to name the input in messages
    name: str  # default ledger source name
    malformed: pd.DataFrame | None = None  # CSV lines with too many fields (with ROW_COLUMN)


def _describe_content(head: bytes) -> str:
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if not head:
        return "nothing (0 bytes)"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16 text"
    if b"\x00" in head:
        return "binary data"
    text = head[:4096].decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith(("{", "[")):
        return "JSON text"
    if text.startswith("<"):
        return "XML/HTML text"
    first = text.splitlines()[0][:80] if text else ""
    return f"plain text starting {first!r}"


def _mismatch(display: str, fmt: str, head: bytes) -> DataSourceError:
    msg = (
        f"{display} is not a valid {fmt} file: its content looks like "
        f"{_describe_content(head)}. Check that this is the right file, or give it the "
        "extension that matches its content"
    )
    return DataSourceError(msg)


def _check_content(suffix: str, head: bytes, display: str) -> None:
    """Refuse a file whose first bytes contradict its extension."""
    expected = _EXPECTED_MAGIC.get(suffix)
    if expected is not None:
        magic, fmt = expected
        if not head.startswith(magic):
            raise _mismatch(display, fmt, head)
        return
    fmt = _TEXT_FORMATS.get(suffix)
    if fmt is None:
        return
    is_utf16 = head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if any(head.startswith(magic) for magic, _ in _MAGIC) or (b"\x00" in head and not is_utf16):
        raise _mismatch(display, fmt, head)


def _open_checked(path: Path) -> bytes:
    """Check that ``path`` is a readable, non-empty file and return its first bytes."""
    if not path.exists():
        parent = path.parent
        where = (
            f"the folder {parent} exists but has no such file"
            if parent.is_dir()
            else f"the folder {parent} does not exist either"
        )
        msg = f"{path}: no such file ({where}); check the path and spelling"
        raise DataSourceError(msg)
    if path.is_dir():
        msg = f"{path} is a directory, not a data file; name the file inside it"
        raise DataSourceError(msg)
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except PermissionError as err:
        msg = f"{path} cannot be read: permission denied; ask for read access to the file"
        raise DataSourceError(msg) from err
    except OSError as err:
        msg = f"{path} cannot be read: {err.strerror or err}"
        raise DataSourceError(msg) from err
    if not head:
        msg = f"{path} is empty, no rows (0 bytes)"
        raise DataSourceError(msg)
    return head


def _guess_encoding(head: bytes, display: str) -> str:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for encoding in ("utf-8", "gb18030"):
        try:
            codecs.getincrementaldecoder(encoding)().decode(head, final=False)
        except UnicodeDecodeError:
            continue
        if encoding != "utf-8":
            logger.info("%s is not UTF-8; reading it as %s", display, encoding)
            return encoding
        return "utf-8-sig"
    msg = (
        f"{display} is neither UTF-8 nor GB18030 text; name its encoding "
        "(encoding='latin-1', 'cp1252', 'big5' …)"
    )
    raise DataSourceError(msg)


def _sniff_delimiter(head_text: str) -> str:
    """Pick the delimiter that splits the header line most often (quoted text ignored)."""
    lines = head_text.lstrip("\ufeff").splitlines()
    first = next((line for line in lines if line.strip()), "")
    unquoted = re.sub(r'"[^"]*"', "", first)
    counts = {sep: unquoted.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] > 0 else ","


def _strip_header(frame: pd.DataFrame) -> pd.DataFrame:
    names = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    if len(set(names)) == len(names):
        frame.columns = names
    if ROW_COLUMN in frame.columns:
        msg = f"the input has a column named {ROW_COLUMN!r}, which geosup reserves for row numbers"
        raise SchemaError(msg)
    return frame


def _read_csv_loose(
    opener: Callable[[], BinaryIO], *, encoding: str, sep: str, display: str
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Parse a CSV whose lines have inconsistent field counts (the slow, tolerant path).

    Lines with more fields than the header go to the second frame (with an ``_extra`` column);
    shorter lines are padded with empty strings, as pandas' fast reader does.
    """
    logger.info("%s has lines with more fields than its header; reading it line by line", display)
    try:
        with opener() as fh, _stdio.TextIOWrapper(fh, encoding=encoding, newline="") as text:
            reader = csv.reader(text, delimiter=sep)
            header = next(reader, None)
            records = list(reader)
    except (csv.Error, UnicodeDecodeError, OSError) as err:
        msg = f"cannot read {display} as CSV: {err}"
        raise DataSourceError(msg) from err
    if header is None:
        msg = f"{display} is empty, no rows"
        raise DataSourceError(msg)
    width = len(header)
    lengths = np.fromiter((len(r) for r in records), dtype=np.int64, count=len(records))
    rows = np.arange(1, len(records) + 1, dtype=np.int64)
    fits = lengths <= width
    good = [r + [""] * (width - len(r)) for r, ok in zip(records, fits, strict=True) if ok]
    frame = _strip_header(pd.DataFrame(good, columns=header, dtype=object).astype(str))
    frame.insert(0, ROW_COLUMN, rows[fits])
    malformed = None
    if not fits.all():
        bad = [r for r, ok in zip(records, fits, strict=True) if not ok]
        malformed = pd.DataFrame([r[:width] for r in bad], columns=frame.columns[1:])
        malformed["_extra"] = [sep.join(r[width:]) for r in bad]
        malformed.insert(0, ROW_COLUMN, rows[~fits])
    return frame, malformed


def _load_csv(
    opener: Callable[[], BinaryIO],
    head: bytes,
    *,
    display: str,
    name: str,
    sep: str | None,
    encoding: str | None,
) -> _Loaded:
    enc = encoding or _guess_encoding(head, display)
    try:
        head_text = codecs.getincrementaldecoder(enc)(errors="replace").decode(head, final=False)
    except LookupError as err:
        msg = f"unknown encoding {enc!r} for {display}"
        raise DataSourceError(msg) from err
    if not head_text.strip("\ufeff \t\r\n"):
        msg = f"{display} is empty, no rows (only blank lines)"
        raise DataSourceError(msg)
    delimiter = sep or _sniff_delimiter(head_text)
    malformed = None
    try:
        with opener() as fh:
            raw = pd.read_csv(
                fh,
                sep=delimiter,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                skip_blank_lines=False,
                index_col=False,
                encoding=enc,
                engine="c",
            )
        raw = _strip_header(raw)
        raw.insert(0, ROW_COLUMN, np.arange(1, len(raw) + 1, dtype=np.int64))
    except pd.errors.EmptyDataError as err:
        msg = f"{display} is empty, no rows"
        raise DataSourceError(msg) from err
    except pd.errors.ParserError:
        raw, malformed = _read_csv_loose(opener, encoding=enc, sep=delimiter, display=display)
    except UnicodeDecodeError as err:
        if encoding is None and enc != "gb18030":
            logger.info("%s is not UTF-8 throughout; trying GB18030", display)
            return _load_csv(opener, head, display=display, name=name, sep=sep,
                             encoding="gb18030")
        msg = (
            f"{display} is not valid {enc} text (byte {err.start}); name its encoding "
            "(encoding='latin-1', 'cp1252', 'gb18030' …)"
        )
        raise DataSourceError(msg) from err
    except (ValueError, OSError) as err:
        msg = f"cannot read {display} as CSV: {err}"
        raise DataSourceError(msg) from err
    # Blank lines at the very end of a file are not rows.
    values = raw.drop(columns=ROW_COLUMN)
    if len(values.columns):
        blank = values.eq("").all(axis=1).to_numpy(dtype=bool)
        filled = np.flatnonzero(~blank)
        end = int(filled[-1]) + 1 if len(filled) else 0
        if end < len(raw):
            raw = raw.iloc[:end].copy()
    if len(raw) == 0 and (malformed is None or len(malformed) == 0):
        msg = f"{display} is empty, no rows (only a header line)"
        raise DataSourceError(msg)
    logger.debug("%s: CSV, delimiter %r, encoding %s, %d rows", display, delimiter, enc, len(raw))
    return _Loaded(raw.reset_index(drop=True), text=True, display=display, name=name,
                   malformed=malformed)


def _load_parquet(data: Path | bytes, *, display: str, name: str) -> _Loaded:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def source() -> Any:
        return pa.BufferReader(data) if isinstance(data, bytes) else str(data)

    try:
        metadata = pq.read_schema(source()).metadata or {}
        if b"geo" in metadata:
            frame = gpd.read_parquet(source() if not isinstance(data, bytes)
                                     else _stdio.BytesIO(data))
        else:
            frame = pq.read_table(source()).to_pandas()
    except GeosupError:
        raise
    except (pa.ArrowException, OSError, ValueError, TypeError, KeyError) as err:
        msg = f"cannot read {display} as Parquet: {err}"
        raise DataSourceError(msg) from err
    return _finish_typed(frame, display=display, name=name, what="file")


def _finish_typed(frame: pd.DataFrame, *, display: str, name: str, what: str) -> _Loaded:
    if len(frame) == 0:
        msg = f"{display} is empty, no rows (the {what} has no records)"
        raise DataSourceError(msg)
    named_index = any(level is not None for level in frame.index.names)
    frame = _strip_header(frame.reset_index(drop=not named_index))  # a named index is data
    frame.insert(0, ROW_COLUMN, np.arange(1, len(frame) + 1, dtype=np.int64))
    return _Loaded(frame, text=False, display=display, name=name)


def _pick_layer(path: str, layers: list[str], layer: str | None, display: str) -> str:
    if layer is not None:
        if layer in layers:
            return layer
        folded = [name for name in layers if name.casefold() == layer.casefold()]
        if len(folded) == 1:
            return folded[0]
        msg = f"{display} has no layer {layer!r}; its layers are: {', '.join(layers)}"
        raise DataSourceError(msg)
    if len(layers) == 1:
        return layers[0]
    if set(_GPX_LAYERS) <= set(layers):
        for candidate in _GPX_LAYERS:
            if pyogrio.read_info(path, layer=candidate).get("features", 0):
                logger.info("%s: reading GPX layer %r", display, candidate)
                return candidate
        return _GPX_LAYERS[0]
    msg = (
        f"{display} holds {len(layers)} layers ({', '.join(layers)}); choose one with "
        "layer=NAME (--layer NAME)"
    )
    raise DataSourceError(msg)


@contextlib.contextmanager
def _gdal_warnings_logged(display: str) -> Iterator[None]:
    """Send GDAL's warnings (pyogrio raises them as RuntimeWarning) to the log."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        yield
    for item in caught:
        if issubclass(item.category, RuntimeWarning):
            logger.warning("%s: GDAL: %s", display, item.message)
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


def _load_ogr(path: str, *, layer: str | None, display: str, name: str, head: bytes) -> _Loaded:
    try:
        with _gdal_warnings_logged(display):
            layers = [str(v) for v in pyogrio.list_layers(path)[:, 0]]
    except (RuntimeError, OSError, ValueError) as err:
        msg = (
            f"cannot open {display} as a GIS dataset: {err}. Its content looks like "
            f"{_describe_content(head)}"
        )
        raise DataSourceError(msg) from err
    if not layers:
        msg = f"{display} holds no layers, no rows"
        raise DataSourceError(msg)
    chosen = _pick_layer(path, layers, layer, display)
    try:
        with _gdal_warnings_logged(display):
            frame = pyogrio.read_dataframe(
                path, layer=chosen, datetime_as_string=True, use_arrow=True, on_invalid="ignore"
            )
    except (RuntimeError, OSError, ValueError) as err:
        msg = f"cannot read layer {chosen!r} of {display}: {err}"
        raise DataSourceError(msg) from err
    if len(layers) > 1:
        name = f"{name}:{chosen}"
        display = f"layer {chosen!r} of {display}"
    return _finish_typed(frame, display=display, name=name, what="layer")


def _zip_member(archive: Path, layer: str | None) -> tuple[str, str | None]:
    """Choose the dataset inside a zip archive; return (member, layer left to choose)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [
                info.filename for info in zf.infolist()
                if not info.is_dir() and not info.filename.startswith("__MACOSX/")
                and not Path(info.filename).name.startswith(".")
            ]
    except (zipfile.BadZipFile, OSError) as err:
        msg = f"{archive} is not a valid zip archive: {err}"
        raise DataSourceError(msg) from err
    strong = [m for m in members if Path(m).suffix.lower() in _ZIP_STRONG]
    # A .dbf beside a .shp is part of the shapefile, not a table of its own.
    shp_stems = {str(Path(m).with_suffix("")).lower() for m in strong if m.lower().endswith(".shp")}
    weak = [
        m for m in members
        if Path(m).suffix.lower() in _ZIP_WEAK
        and not (m.lower().endswith(".dbf") and str(Path(m).with_suffix("")).lower() in shp_stems)
    ]
    if layer is not None:
        wanted = layer.casefold()
        matches = [
            m for m in strong + weak
            if wanted in (Path(m).stem.casefold(), Path(m).name.casefold(), m.casefold())
        ]
        if len(matches) == 1:
            return matches[0], None
        containers = [m for m in strong if Path(m).suffix.lower() in {".gpkg", ".gpx"}]
        if not matches and len(strong) == 1 and containers:
            return containers[0], layer
    candidates = strong or weak
    if len(candidates) == 1:
        return candidates[0], layer
    listing = ", ".join(members) if members else "nothing"
    if not candidates:
        msg = f"{archive} holds no readable dataset (it contains: {listing})"
    else:
        msg = (
            f"{archive} holds {len(candidates)} datasets ({', '.join(candidates)}); choose one "
            "with layer=NAME (--layer NAME)"
        )
    raise DataSourceError(msg)


def _load_zip(
    archive: Path, *, layer: str | None, sep: str | None, encoding: str | None
) -> _Loaded:
    member, layer_left = _zip_member(archive, layer)
    suffix = Path(member).suffix.lower()
    display = f"{archive} (member {member})"
    name = archive.name
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(member) as fh:
            head = fh.read(_HEAD_BYTES)
    except (zipfile.BadZipFile, OSError, RuntimeError) as err:
        msg = f"cannot read {member} inside {archive}: {err}"
        raise DataSourceError(msg) from err
    if not head:
        msg = f"{display} is empty, no rows (0 bytes)"
        raise DataSourceError(msg)
    _check_content(suffix, head, display)
    if suffix in _CSV_SUFFIXES:

        def opener() -> BinaryIO:
            zf = zipfile.ZipFile(archive)
            return _ZipMemberReader(zf, member)

        return _load_csv(opener, head, display=display, name=name, sep=sep, encoding=encoding)
    if suffix in _PARQUET_SUFFIXES:
        with zipfile.ZipFile(archive) as zf:
            data = zf.read(member)
        return _load_parquet(data, display=display, name=name)
    vsi = f"/vsizip/{archive.resolve()}/{member}"
    return _load_ogr(vsi, layer=layer_left, display=display, name=name, head=head)


class _ZipMemberReader(_stdio.BufferedReader):
    """A zip member opened for reading that closes its archive too."""

    def __init__(self, zf: zipfile.ZipFile, member: str) -> None:
        self._zf = zf
        super().__init__(zf.open(member))  # type: ignore[arg-type]

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._zf.close()


def _safe_url(url: str) -> str:
    """The URL without password or fragment, for messages."""
    return safe_url(url.partition("#")[0])


def _load_database(url: str, *, layer: str | None) -> _Loaded:
    base, _, fragment = url.partition("#")
    spec = fragment or layer
    if not spec:
        msg = (
            f"{_safe_url(url)}: name the table, e.g. postgresql://host/db#schema.table "
            "or layer='schema.table'"
        )
        raise DataSourceError(msg)
    schema, _, table = spec.rpartition(".")
    display = f"table {spec} in {_safe_url(url)}"
    try:
        from geosup.store import read_database_table
    except ImportError as err:
        msg = f"cannot read {display}: database support is not available ({err})"
        raise DataSourceError(msg) from err
    try:
        frame = read_database_table(base, table=table, schema=schema or None)
    except GeosupError:
        raise
    except (ImportError, OSError, RuntimeError, ValueError, KeyError) as err:
        msg = f"cannot read {display}: {err}"
        raise DataSourceError(msg) from err
    return _finish_typed(frame, display=display, name=spec, what="table")


def _load(
    source: str | os.PathLike[str],
    *,
    layer: str | None,
    sep: str | None,
    encoding: str | None,
) -> _Loaded:
    text = os.fspath(source)
    if _PG_URL.match(text):
        return _load_database(text, layer=layer)
    if text.startswith("/vsi"):
        return _load_ogr(text, layer=layer, display=text, name=Path(text).name, head=b"")
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix == ".gdb" and path.is_dir():
        return _load_ogr(str(path), layer=layer, display=str(path), name=path.name, head=b"")
    head = _open_checked(path)
    display = str(path)
    if suffix == ".zip":
        if not head.startswith(b"PK"):
            raise _mismatch(display, "zip", head)
        return _load_zip(path, layer=layer, sep=sep, encoding=encoding)
    _check_content(suffix, head, display)
    if suffix in _CSV_SUFFIXES:

        def opener() -> BinaryIO:
            return path.open("rb")

        return _load_csv(opener, head, display=display, name=path.name, sep=sep,
                         encoding=encoding)
    if suffix in _PARQUET_SUFFIXES:
        return _load_parquet(path, display=display, name=path.name)
    if suffix not in _OGR_SUFFIXES:
        logger.info("%s: unknown extension %r; letting GDAL identify the format", display, suffix)
    return _load_ogr(str(path), layer=layer, display=display, name=path.name, head=head)


# ---------------------------------------------------------------------------------------------
# Vectorised parsing helpers
# ---------------------------------------------------------------------------------------------


def _is_textual(series: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(
        series.dtype
    )


def _missing(series: pd.Series, *, tokens: bool = True) -> np.ndarray:
    """Boolean mask of missing values.

    NA and blank strings are missing; with ``tokens`` (text files, where every value is a
    string) so are ``NA``, ``NULL``, ``None``, ``nan`` … (case-insensitive).
    """
    missing = np.array(series.isna(), dtype=bool)
    if _is_textual(series):
        folded = series.astype(str).str.strip().str.lower()
        nulls = _NULL_TOKENS if tokens else ("",)
        missing = missing | np.array(folded.isin(nulls), dtype=bool)
    return missing


def _parse_numbers(
    series: pd.Series, *, tokens: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse numbers: (float64 values, mask of unparseable, mask of missing)."""
    missing = _missing(series, tokens=tokens)
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
        series.dtype
    ):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        text = series.astype(str).str.strip().where(~missing)
        parsed = pd.to_numeric(text, errors="coerce")
        values = pd.Series(parsed).to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = ~missing & ~np.isfinite(values)
    values = np.where(missing, np.nan, values)
    return values, bad, missing


def _parse_datetime_strings(text: pd.Series, *, utc: bool) -> np.ndarray:
    """Parse strings to datetime64[us] (UTC wall time when ``utc``, else naive wall time).

    Tries ISO 8601 first (fast), then the format pandas infers from the remaining values,
    then anything dateutil understands; values none of them parse stay NaT.
    """
    out = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[us]")
    todo = np.ones(len(text), dtype=bool)
    for fmt in ("ISO8601", None, "mixed"):
        if not todo.any():
            break
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parsed = pd.to_datetime(text[todo], errors="coerce", utc=utc, format=fmt)
        except (ValueError, TypeError, OverflowError):
            continue
        if not pd.api.types.is_datetime64_any_dtype(parsed.dtype):
            continue
        if getattr(parsed.dt, "tz", None) is not None:
            if not utc:
                continue  # offsets the naive pattern missed: leave them unparsed
            parsed = parsed.dt.tz_convert(None)
        ok = np.array(parsed.notna(), dtype=bool)
        if ok.any():
            positions = np.flatnonzero(todo)[ok]
            out[positions] = parsed[ok].dt.as_unit("us").to_numpy(dtype="datetime64[us]")
            todo[positions] = False
    return out


def _has_offset(text: pd.Series) -> np.ndarray:
    """True where a time string carries its own zone (``Z``, ``+08:00``, ``UTC`` …)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    array = pa.array(np.array(text, dtype=object), type=pa.string(), from_pandas=True)
    matched = pc.fill_null(pc.match_substring_regex(array, _TZ_SUFFIX), False)
    return np.array(matched.to_numpy(zero_copy_only=False), dtype=bool)


def _parse_times(
    series: pd.Series, *, tz: str, tokens: bool = True
) -> tuple[pd.Series, np.ndarray, np.ndarray, int]:
    """Parse a time column to UTC.

    Returns the UTC times (``datetime64[us, UTC]``), masks of unparseable values and of local
    times that do not exist or are ambiguous in ``tz``, and how many values were naive (read
    in ``tz``).
    """
    n = len(series)
    missing = _missing(series, tokens=tokens)
    bad_local = np.zeros(n, dtype=bool)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        if getattr(series.dt, "tz", None) is not None:
            return series.dt.tz_convert("UTC"), np.zeros(n, dtype=bool), bad_local, 0
        local = series.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        bad_local = np.array(local.isna() & series.notna(), dtype=bool)
        naive = int((~missing).sum())
        return local.dt.tz_convert("UTC"), np.zeros(n, dtype=bool), bad_local, naive
    text = series.astype(str).str.strip()
    candidate = ~missing
    aware = candidate & _has_offset(text)
    naive = candidate & ~aware
    utc = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
    if aware.any():
        utc[aware] = _parse_datetime_strings(text[aware], utc=True)
    if naive.any():
        wall = pd.Series(_parse_datetime_strings(text[naive], utc=False))
        local = wall.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        bad_local[naive] = np.array(local.isna() & wall.notna(), dtype=bool)
        utc[naive] = local.dt.tz_convert(None).dt.as_unit("us").to_numpy(dtype="datetime64[us]")
    out = pd.Series(utc, index=series.index).dt.tz_localize("UTC")
    unparseable = candidate & np.isnat(utc) & ~bad_local
    return out, unparseable, bad_local, int(naive.sum())


def _repair_geometries(geoms: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """make_valid, keeping only parts of each geometry's own dimension."""
    fixed = np.empty(len(geoms), dtype=object)
    polygonal = dims == 2
    if polygonal.any():
        fixed[polygonal] = shapely.make_valid(
            geoms[polygonal], method="structure", keep_collapsed=False
        )
    if (~polygonal).any():
        fixed[~polygonal] = shapely.make_valid(geoms[~polygonal])
    collection = shapely.get_type_id(fixed) == shapely.GeometryType.GEOMETRYCOLLECTION
    if collection.any():
        where = np.flatnonzero(collection)
        parts, owner = shapely.get_parts(fixed[where], return_index=True)
        parts, sub = shapely.get_parts(parts, return_index=True)
        owner = owner[sub]
        keep = shapely.get_dimensions(parts) == dims[where][owner]
        rebuilt = np.full(len(where), None, dtype=object)
        for dim, build in ((0, shapely.multipoints), (1, shapely.multilinestrings),
                           (2, shapely.multipolygons)):
            select = keep & (dims[where][owner] == dim)
            if select.any():
                groups, dense = np.unique(owner[select], return_inverse=True)
                rebuilt[groups] = build(parts[select], indices=dense)
        empty = shapely.is_missing(rebuilt)
        rebuilt[empty] = shapely.from_wkt("GEOMETRYCOLLECTION EMPTY")
        fixed[where] = rebuilt
    return fixed


# ---------------------------------------------------------------------------------------------
# Units of measure
# ---------------------------------------------------------------------------------------------

_L_PER_US_GAL = 3.785411784
_L_PER_IMP_GAL = 4.54609
_KM_PER_MI = 1.609344
_KM_PER_NMI = 1.852

#: Canonical columns that hold a quantity: column -> (quantity, the unit geosup holds it in).
#: ``None``: the unit is chosen per run (farmland areas are held in the run's ``--area-unit``).
UNIT_COLUMNS: dict[str, tuple[str, str | None]] = {
    "litres": ("volume", "l"),
    "tank_l": ("volume", "l"),
    "odometer_km": ("distance", "km"),
    "speed_kmh": ("speed", "km/h"),
    "rated_l_per_100km": ("fuel consumption", "l/100km"),
    "claimed_area_m2": ("area", "m2"),
    "declared_area": ("area", None),
    "eligible_area": ("area", None),
}

# Units of each quantity: name -> (factor, inverse). The value in the quantity's base unit
# (the first one listed) is ``factor * x``, or ``factor / x`` for an inverse unit (distance
# per volume against volume per distance).
_UNITS: dict[str, dict[str, tuple[float, bool]]] = {
    "volume": {"l": (1.0, False), "ml": (1e-3, False), "m3": (1e3, False),
               "gal": (_L_PER_US_GAL, False), "imp_gal": (_L_PER_IMP_GAL, False)},
    "distance": {"km": (1.0, False), "m": (1e-3, False), "mi": (_KM_PER_MI, False),
                 "nmi": (_KM_PER_NMI, False)},
    "speed": {"km/h": (1.0, False), "m/s": (3.6, False), "mph": (_KM_PER_MI, False),
              "kn": (_KM_PER_NMI, False)},
    "fuel consumption": {"l/100km": (1.0, False), "km/l": (100.0, True),
                         "mpg": (100.0 * _L_PER_US_GAL / _KM_PER_MI, True),
                         "imp_mpg": (100.0 * _L_PER_IMP_GAL / _KM_PER_MI, True)},
    "area": {"m2": (1.0, False), "mu": (10_000.0 / 15.0, False), "ha": (10_000.0, False),
             "km2": (1_000_000.0, False)},
}
_UNIT_NOTES = {"gal": "US gallon", "imp_gal": "imperial gallon", "mpg": "US miles per gallon",
               "imp_mpg": "miles per imperial gallon", "nmi": "nautical mile", "kn": "knot",
               "mu": "亩"}
# Spellings (lower-case, without spaces, "-" and "_") -> unit. Area spellings come from
# :func:`geosup.crs.normalize_area_unit`.
_UNIT_ALIASES: dict[str, str] = {
    **{a: "l" for a in ("l", "litre", "litres", "liter", "liters", "ltr", "lt", "升")},
    **{a: "ml" for a in ("ml", "millilitre", "millilitres", "milliliter", "milliliters")},
    **{a: "m3" for a in ("m3", "m³", "cbm", "cubicmetre", "cubicmetres", "cubicmeter",
                         "cubicmeters")},
    **{a: "gal" for a in ("gal", "gals", "gallon", "gallons", "usgal", "galus", "usgallon",
                          "usgallons")},
    **{a: "imp_gal" for a in ("impgal", "imperialgallon", "imperialgallons", "ukgal",
                              "galimp")},
    **{a: "km" for a in ("km", "kms", "kilometre", "kilometres", "kilometer", "kilometers",
                         "公里", "千米")},
    **{a: "m" for a in ("m", "metre", "metres", "meter", "meters", "米")},
    **{a: "mi" for a in ("mi", "mile", "miles")},
    **{a: "nmi" for a in ("nmi", "nauticalmile", "nauticalmiles")},
    **{a: "km/h" for a in ("km/h", "kmh", "kph", "kmph", "km/hr", "公里/小时", "千米/小时")},
    **{a: "m/s" for a in ("m/s", "mps", "米/秒")},
    **{a: "mph" for a in ("mph", "mi/h", "mi/hr")},
    **{a: "kn" for a in ("kn", "kt", "kts", "knot", "knots")},
    **{a: "l/100km" for a in ("l/100km", "l/100kms", "litres/100km", "liters/100km")},
    **{a: "km/l" for a in ("km/l", "kmpl", "kmperl")},
    **{a: "mpg" for a in ("mpg", "usmpg", "mpgus", "mi/gal")},
    **{a: "imp_mpg" for a in ("impmpg", "mpgimp", "ukmpg", "mpguk")},
}


def _unit_listing(quantity: str) -> str:
    return ", ".join(f"{u} ({_UNIT_NOTES[u]})" if u in _UNIT_NOTES else u
                     for u in _UNITS[quantity])


def _unit_name(unit: str) -> str | None:
    if not isinstance(unit, str):
        return None
    squashed = "".join(ch for ch in unit.strip().lower() if ch not in " -_")
    if squashed in _UNIT_ALIASES:
        return _UNIT_ALIASES[squashed]
    from geosup.crs import normalize_area_unit

    try:
        return normalize_area_unit(unit)
    except ConfigError:
        return None


def normalize_unit(column: str, unit: str) -> str:
    """The canonical name of a unit declared for a canonical column.

    Parameters
    ----------
    column : str
        A column of :data:`UNIT_COLUMNS` (``litres``, ``odometer_km``, ``speed_kmh`` …).
    unit : str
        The unit, in one of its usual spellings (``"gal"``, ``"gallons"``, ``"miles"``,
        ``"mph"``, ``"m²"``, ``"亩"`` …), case-insensitive.

    Returns
    -------
    str
        The unit's canonical name (``"gal"``, ``"mi"``, ``"mph"``, ``"m2"``, ``"mu"`` …).

    Raises
    ------
    ConfigError
        The column holds no quantity, the unit is unknown, or it measures another quantity
        than the column (the message lists the units the column accepts).

    Examples
    --------
    >>> normalize_unit("litres", "US Gallons"), normalize_unit("odometer_km", "miles")
    ('gal', 'mi')
    >>> normalize_unit("litres", "mi")
    Traceback (most recent call last):
    ...
    geosup.errors.ConfigError: unit 'mi' is a distance, not a volume: column 'litres' takes \
one of: l, ml, m3, gal (US gallon), imp_gal (imperial gallon)
    """
    if column not in UNIT_COLUMNS:
        msg = (f"no unit can be declared for column {column!r}; columns with a unit: "
               f"{', '.join(UNIT_COLUMNS)}")
        raise ConfigError(msg)
    quantity = UNIT_COLUMNS[column][0]
    name = _unit_name(unit)
    if name is None:
        msg = (f"unknown unit {unit!r} for column {column!r}; it takes one of: "
               f"{_unit_listing(quantity)}")
        raise ConfigError(msg)
    if name not in _UNITS[quantity]:
        other = next(q for q, units in _UNITS.items() if name in units)
        msg = (f"unit {unit!r} is a{'n' if other[0] in 'aeiou' else ''} {other}, not a"
               f"{'n' if quantity[0] in 'aeiou' else ''} {quantity}: column {column!r} takes "
               f"one of: {_unit_listing(quantity)}")
        raise ConfigError(msg)
    return name


def convert_units(values: np.ndarray, unit: str, target: str, *, quantity: str) -> np.ndarray:
    """Values in ``unit`` converted to ``target`` (two units of ``quantity``).

    Missing values stay NaN; for inverse units (``mpg`` to ``l/100km``) a value <= 0 has no
    equivalent and becomes NaN.

    Examples
    --------
    >>> convert_units(np.array([10.0, np.nan]), "gal", "l", quantity="volume").round(3)
    array([37.854,    nan])
    >>> convert_units(np.array([25.0]), "mpg", "l/100km", quantity="fuel consumption").round(2)
    array([9.41])
    """
    values = np.asarray(values, dtype=np.float64)
    if unit == target:
        return values.copy()
    factor, inverse = _UNITS[quantity][unit]
    t_factor, t_inverse = _UNITS[quantity][target]
    with np.errstate(divide="ignore", invalid="ignore"):
        base = factor / values if inverse else factor * values
        out = t_factor / base if t_inverse else base / t_factor
    if inverse or t_inverse:
        out = np.where(np.isfinite(out) & (out > 0), out, np.nan)
    return out


def _unit_plan(
    units: Mapping[str, str] | None,
    target_units: Mapping[str, str] | None,
    work: pd.DataFrame,
    *,
    display: str,
) -> dict[str, tuple[str, str, str]]:
    """Check declared units: column -> (source unit, target unit, quantity)."""
    plan: dict[str, tuple[str, str, str]] = {}
    targets = dict(target_units or {})
    for column, unit in (units or {}).items():
        column = str(column)
        source_unit = normalize_unit(column, str(unit))
        quantity, default = UNIT_COLUMNS[column]
        target = targets.get(column, default)
        if target is None:
            msg = (f"column {column!r} is held in the unit chosen for the run; give it as "
                   f"target_units={{{column!r}: 'mu'}} (the run's --area-unit)")
            raise ConfigError(msg)
        target = normalize_unit(column, str(target))
        if column not in work.columns:
            msg = (f"a unit is declared for column {column!r}, which {display} does not "
                   f"have; map it first (--map {column}=<Source column>) or drop the unit")
            raise SchemaError(msg)
        plan[column] = (source_unit, target, quantity)
    return plan


# ---------------------------------------------------------------------------------------------
# read_table
# ---------------------------------------------------------------------------------------------


def _resolve_column(name: str, available: Sequence[str]) -> str | None:
    if name in available:
        return name
    folded = [c for c in available if c.strip().casefold() == name.strip().casefold()]
    return folded[0] if len(folded) == 1 else None


def _map_columns(
    attrs: pd.DataFrame,
    columns: Mapping[str, str] | None,
    combine: Mapping[str, Sequence[str]] | None,
    *,
    display: str,
    tokens: bool,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rename source columns to canonical names; return the frame and canonical -> source."""
    available = [str(c) for c in attrs.columns]
    listing = ", ".join(available)
    sources: dict[str, str] = {}
    for canonical, wanted in (columns or {}).items():
        found = _resolve_column(str(wanted), available)
        if found is None:
            msg = (
                f"column {wanted!r} (mapped to {canonical!r}) is not in {display}; "
                f"available columns: {listing}"
            )
            raise SchemaError(msg)
        sources[str(canonical)] = found
    combined: dict[str, list[str]] = {}
    for canonical, parts in (combine or {}).items():
        found_parts = []
        for wanted in parts:
            found = _resolve_column(str(wanted), available)
            if found is None:
                msg = (
                    f"column {wanted!r} (combined into {canonical!r}) is not in {display}; "
                    f"available columns: {listing}"
                )
                raise SchemaError(msg)
            found_parts.append(found)
        if canonical in sources:
            msg = f"{canonical!r} is both mapped and combined; give it one source"
            raise SchemaError(msg)
        combined[str(canonical)] = found_parts
    by_source: dict[str, list[str]] = {}
    for canonical, source_name in sources.items():
        by_source.setdefault(source_name, []).append(canonical)
    out: dict[str, pd.Series] = {}

    def put(target: str, values: pd.Series) -> None:
        if target in out:
            msg = f"two source columns of {display} would both become {target!r}"
            raise SchemaError(msg)
        out[target] = values

    for col in available:
        if col in by_source:
            for canonical in by_source[col]:
                put(canonical, attrs[col])
        elif col in sources:
            msg = (
                f"cannot map {sources[col]!r} to {col!r}: {display} already has a column "
                f"{col!r}; map that one to another name as well"
            )
            raise SchemaError(msg)
        else:
            put(col, attrs[col])
    for canonical, parts in combined.items():
        if canonical in out and canonical not in parts:
            msg = (
                f"cannot combine {parts} into {canonical!r}: {display} already has a column "
                f"{canonical!r}"
            )
            raise SchemaError(msg)
        pieces = [attrs[p] for p in parts]
        missing = np.logical_or.reduce([_missing(p, tokens=tokens) for p in pieces])
        joined = pieces[0].astype(str).str.strip()
        for piece in pieces[1:]:
            joined = joined + " " + piece.astype(str).str.strip()
        out[canonical] = joined.where(~missing, "")
    return pd.DataFrame(out, index=attrs.index), sources


def _active_geometry(frame: pd.DataFrame) -> str | None:
    """Name of a GeoDataFrame's active geometry column, or None."""
    if not isinstance(frame, gpd.GeoDataFrame):
        return None
    try:
        return str(frame.geometry.name)
    except AttributeError:  # a GeoDataFrame without an active geometry column
        return None


def _geometry_array(frame: gpd.GeoDataFrame | gpd.GeoSeries) -> np.ndarray:
    values = frame.geometry.array if isinstance(frame, gpd.GeoDataFrame) else frame.array
    return np.asarray(values, dtype=object).copy()


class _Rows:
    """Book-keeping of one read: which rows are still usable; rejects go to the ledger."""

    def __init__(
        self, raw: pd.DataFrame, *, name: str, ledger: RejectsLedger, key_source: str | None
    ) -> None:
        self.raw = raw
        self.name = name
        self.ledger = ledger
        self.key_source = key_source
        self.rows = raw[ROW_COLUMN].to_numpy(dtype=np.int64)
        self.alive = np.ones(len(raw), dtype=bool)

    def __len__(self) -> int:
        return len(self.alive)

    def reject(self, mask: np.ndarray, reason: str | np.ndarray) -> None:
        """Send the still-usable rows of ``mask`` to the ledger (one reason, or one per row)."""
        hit = np.asarray(mask, dtype=bool) & self.alive
        if not hit.any():
            return
        why = reason[hit] if isinstance(reason, np.ndarray) else reason
        self.ledger.add(self.name, self.raw.loc[hit], why, key_column=self.key_source)
        self.alive[hit] = False

    def check_lonlat(self, lon: np.ndarray, lat: np.ndarray) -> None:
        """Reject swapped, out-of-range and (0, 0) longitude/latitude pairs."""
        with np.errstate(invalid="ignore"):
            lat_out = np.abs(lat) > 90
            lon_out = np.abs(lon) > 180
            swapped = lat_out & (np.abs(lat) <= 180) & (np.abs(lon) <= 90)
            self.reject(
                swapped,
                "lat/lon look swapped (lat is out of range but the swapped pair is valid); "
                "check the column mapping",
            )
            self.reject(lat_out | lon_out, "lon/lat out of range (|lat| > 90 or |lon| > 180)")
            self.reject(
                (lon == 0) & (lat == 0),
                "lon/lat is exactly (0, 0), a placeholder for a missing position",
            )


def _require_columns(
    work: pd.DataFrame,
    required: Sequence[str],
    id_column: str | None,
    *,
    has_geometry: bool,
    available: Sequence[str],
    display: str,
) -> None:
    absent = [
        col for col in required
        if col not in work.columns and not (col == "geometry" and has_geometry)
    ]
    if id_column is not None and id_column not in work.columns and id_column not in absent:
        absent.append(id_column)
    if absent:
        col = absent[0]
        others = f" (also missing: {', '.join(absent[1:])})" if len(absent) > 1 else ""
        msg = (
            f"{display} has no column {col!r}, which is required{others}; available columns: "
            f"{', '.join(available)}. Map a source column to it with --map "
            f"{col}=<Source column> (columns={{{col!r}: '<Source column>'}} in Python)"
        )
        raise SchemaError(msg)


def _convert_values(
    work: pd.DataFrame,
    state: _Rows,
    *,
    time_columns: Sequence[str],
    numeric_columns: Sequence[str],
    skip: Sequence[str],
    tz: str,
    tokens: bool,
    display: str,
) -> dict[str, Any]:
    """Parse time and numeric columns, rejecting rows whose values do not parse."""
    converted: dict[str, Any] = {}
    for col in time_columns:
        if col not in work.columns:
            logger.debug("%s: no time column %r; skipped", display, col)
            continue
        times, unparseable, bad_local, naive = _parse_times(work[col], tz=tz, tokens=tokens)
        state.reject(unparseable, f"unparseable time in column {col!r}")
        state.reject(bad_local, f"time in column {col!r} does not exist or is ambiguous in {tz}")
        if naive:
            logger.info(
                "%s: %d naive times in column %r read as %s and converted to UTC",
                display, naive, col, tz,
            )
        converted[col] = times
    for col in numeric_columns:
        if col not in work.columns or col in skip:
            continue
        values, bad, _ = _parse_numbers(work[col], tokens=tokens)
        state.reject(bad, f"not a number in column {col!r}")
        converted[col] = values
    return converted


def _geometry_mode(
    geometry: str,
    work: pd.DataFrame,
    *,
    has_layer: bool,
    text: bool,
    lon: str,
    lat: str,
    available: Sequence[str],
    display: str,
) -> tuple[str, str | None]:
    """Decide where geometry comes from: ("layer" | "lonlat" | "wkt" | "none", WKT column)."""
    if geometry not in ("auto", "lonlat", "none"):
        if geometry not in work.columns:
            msg = (
                f"geometry column {geometry!r} is not in {display}; available columns: "
                f"{', '.join(available)}"
            )
            raise SchemaError(msg)
        return "wkt", geometry
    mode = geometry
    if mode == "auto":
        wkt = [c for c in work.columns if str(c).casefold() in ("geometry", "wkt")]
        if has_layer:
            mode = "layer"
        elif wkt and text:
            return "wkt", str(wkt[0])
        elif lon in work.columns and lat in work.columns:
            mode = "lonlat"
        else:
            mode = "none"
    if mode == "lonlat" and (lon not in work.columns or lat not in work.columns):
        col = lon if lon not in work.columns else lat
        msg = (
            f"{display} has no column {col!r} to build points from; available columns: "
            f"{', '.join(available)}. Map one with --map {col}=<Source column>"
        )
        raise SchemaError(msg)
    return mode, None


def _points_from_lonlat(
    work: pd.DataFrame,
    state: _Rows,
    converted: dict[str, Any],
    *,
    lon: str,
    lat: str,
    system: str,
    declared: pyproj.CRS | None,
    tokens: bool,
    display: str,
) -> tuple[np.ndarray, pyproj.CRS]:
    from geosup.crs import to_wgs84

    lon_v, lon_bad, lon_missing = _parse_numbers(work[lon], tokens=tokens)
    lat_v, lat_bad, lat_missing = _parse_numbers(work[lat], tokens=tokens)
    state.reject(lon_missing | lat_missing, f"missing {lon}/{lat} value")
    state.reject(lon_bad | lat_bad, f"{lon}/{lat} is not a number")
    if declared is not None and not declared.is_geographic:
        out_crs = declared  # x/y columns in a projected CRS
    else:
        state.check_lonlat(lon_v, lat_v)
        if system in ("gcj02", "bd09"):
            lon_v, lat_v = to_wgs84(lon_v, lat_v, system=system)
            logger.info("%s: converted %s points to WGS-84", display, system)
        out_crs = pyproj.CRS.from_epsg(4326) if declared is None else declared
    converted[lon] = lon_v
    converted[lat] = lat_v
    geoms = np.full(len(state), None, dtype=object)
    live = state.alive
    geoms[live] = shapely.points(lon_v[live], lat_v[live])
    return geoms, out_crs


def _geometry_from_wkt(
    work: pd.DataFrame,
    state: _Rows,
    column: str,
    *,
    declared: pyproj.CRS | None,
    tokens: bool,
    display: str,
    optional: bool = False,
    hint: str = "",
) -> np.ndarray:
    if declared is None:
        msg = (
            f"{display} has WKT geometry in column {column!r} but no coordinate reference "
            f"system; declare it with {hint or _CRS_HINT}"
        )
        raise CRSError(msg)
    text = work[column]
    blank = _missing(text, tokens=tokens)
    values = np.array(text.astype(str), dtype=object)
    values[blank] = None
    geoms = shapely.from_wkt(values, on_invalid="ignore")
    if not optional:
        state.reject(blank, "missing geometry")
    state.reject(~blank & shapely.is_missing(geoms),
                 f"geometry in column {column!r} is not valid WKT")
    return geoms


def _layer_crs(
    raw: pd.DataFrame, layer_crs: pyproj.CRS | None, declared: pyproj.CRS | None, display: str,
    *, hint: str = "",
) -> pyproj.CRS:
    from geosup.crs import require_crs

    if declared is None:
        return require_crs(raw, what=display, hint=hint or _CRS_HINT)
    if layer_crs is not None and not layer_crs.equals(declared):
        logger.warning(
            "%s: declared CRS %s overrides the file's own CRS %s",
            display, declared.to_string(), layer_crs.to_string(),
        )
    return declared


def _validate_geometries(
    geoms: np.ndarray, state: _Rows, *, keys: pd.Series | None, optional: bool = False
) -> tuple[np.ndarray, pd.DataFrame]:
    """Reject missing, empty and irreparable geometries; repair the others with make_valid.

    With ``optional``, missing and empty geometries are kept as ``None``.
    """
    if optional:
        geoms = np.where(shapely.is_empty(geoms), None, geoms)
    else:
        state.reject(shapely.is_missing(geoms), "missing geometry")
        state.reject(shapely.is_empty(geoms), "empty geometry")
    repairs = _empty_ledger_frame(REPAIR_COLUMNS)
    invalid = state.alive & ~shapely.is_missing(geoms) & ~shapely.is_valid(geoms)
    if not invalid.any():
        return geoms, repairs
    where = np.flatnonzero(invalid)
    before = geoms[where]
    dims = shapely.get_dimensions(before)
    why = pd.Series(shapely.is_valid_reason(before), dtype=object)
    fixed = _repair_geometries(before, dims)
    ok = ~shapely.is_empty(fixed) & shapely.is_valid(fixed) & (
        shapely.get_dimensions(fixed) == dims
    )
    reasons = np.full(len(state), "", dtype=object)
    reasons[where] = (
        "invalid geometry (" + why
        + ") that make_valid cannot repair without changing its dimension"
    ).to_numpy(dtype=object)
    failed = np.zeros(len(state), dtype=bool)
    failed[where[~ok]] = True
    state.reject(failed, reasons)
    if ok.any():
        kept = where[ok]
        geoms = geoms.copy()
        geoms[kept] = fixed[ok]
        text = (
            "invalid geometry (" + why[ok].reset_index(drop=True)
            + ") repaired with shapely.make_valid: "
            + pd.Series(_TYPE_NAMES[shapely.get_type_id(before[ok])], dtype=object)
            + " -> " + pd.Series(_TYPE_NAMES[shapely.get_type_id(fixed[ok])], dtype=object)
        )
        if keys is None:
            key = np.full(len(kept), "", dtype=object)
        else:
            key = np.array(keys.iloc[kept].astype(str), dtype=object)
        repairs = pd.DataFrame(
            {
                "source": np.full(len(kept), state.name, dtype=object),
                "row": state.rows[kept],
                "key": key,
                "reason": text.to_numpy(dtype=object),
            }
        )
    return geoms, repairs


def _reject_duplicate_ids(work: pd.DataFrame, state: _Rows, id_column: str) -> None:
    """Reject later rows repeating an id among the usable rows; the first one is kept."""
    ids = work[id_column]
    key = ids.astype(str).str.strip() if _is_textual(ids) else ids
    live = np.flatnonzero(state.alive)
    sub = key.iloc[live]
    dup = sub.duplicated(keep="first").to_numpy(dtype=bool)
    if not dup.any():
        return
    first_row = pd.Series(state.rows[live][~dup], index=sub[~dup].to_numpy())
    firsts = first_row.reindex(sub[dup].to_numpy()).to_numpy()
    labels = pd.Series(np.array(sub[dup].astype(str), dtype=object))
    reasons = np.full(len(state), "", dtype=object)
    reasons[live[dup]] = (
        f"duplicate {id_column} '" + labels + "' (first on row "
        + pd.Series(firsts).astype(str) + ")"
    ).to_numpy(dtype=object)
    mask = np.zeros(len(state), dtype=bool)
    mask[live[dup]] = True
    state.reject(mask, reasons)


def _assemble(
    work: pd.DataFrame,
    state: _Rows,
    converted: Mapping[str, Any],
    *,
    text: bool,
    drop: Sequence[str],
    geoms: np.ndarray | None,
    crs: pyproj.CRS | None,
    geometry_name: str,
) -> pd.DataFrame:
    """The usable rows with converted columns, ``_row`` first, and geometry if any."""
    keep = np.flatnonzero(state.alive)
    out = work.iloc[keep].copy()
    for col, values in converted.items():
        if isinstance(values, pd.Series):
            out[col] = values.iloc[keep].set_axis(out.index)
        else:
            out[col] = np.asarray(values)[keep]
    if text:  # blank text is a missing value, not an empty string
        for col in out.columns:
            if col in converted or col in drop or not _is_textual(out[col]):
                continue
            out[col] = out[col].mask(out[col].astype(str).str.strip() == "")
    out = out.drop(columns=list(drop))
    out.insert(0, ROW_COLUMN, state.rows[keep])
    out = out.reset_index(drop=True)
    if geoms is None:
        return out
    series = gpd.GeoSeries(geoms[keep], crs=crs, name=geometry_name)
    return gpd.GeoDataFrame(out, geometry=series, crs=crs)


def read_table(
    source: str | os.PathLike[str],
    *,
    name: str | None = None,
    columns: Mapping[str, str] | None = None,
    required: Sequence[str] = (),
    layer: str | None = None,
    crs: Any = None,
    default_crs: Any = None,
    coord_system: str = "wgs84",
    time_columns: Sequence[str] = (),
    tz: str = "Asia/Shanghai",
    numeric_columns: Sequence[str] = (),
    id_column: str | None = None,
    lon: str = "lon",
    lat: str = "lat",
    geometry: str = "auto",
    geometry_optional: bool = False,
    combine_columns: Mapping[str, Sequence[str]] | None = None,
    ledger: RejectsLedger | None = None,
    sep: str | None = None,
    encoding: str | None = None,
    units: Mapping[str, str] | None = None,
    target_units: Mapping[str, str] | None = None,
    crs_hint: str | None = None,
) -> ReadResult:
    """Read a table or layer, map its columns and validate its rows.

    Parameters
    ----------
    source : str or path-like
        A file (``.csv``/``.tsv``/``.txt``, ``.parquet``, ``.gpkg``, ``.geojson``, ``.shp``,
        ``.fgb``, ``.gpx``, … or any of these inside a ``.zip``, e.g. ``.gpkg.zip``), a GDAL
        ``/vsi…`` path, or ``postgresql://host/db#schema.table``.
    name : str, optional
        The input's name in the ledger; default the file name (``file:layer`` for a
        multi-layer dataset) or ``schema.table``.
    columns : mapping of str to str, optional
        Canonical name -> source column name (``{"vehicle_id": "Vehicle ID"}``). A source
        name that is not in the input raises :class:`~geosup.errors.SchemaError`.
    required : sequence of str
        Canonical columns that must exist (else SchemaError) and have a value in every row
        (else the row is rejected). ``"geometry"`` is satisfied by a geometry column.
    layer : str, optional
        Layer of a multi-layer dataset, member of a zip archive, or ``schema.table`` of a
        database. A GPX file defaults to its first non-empty layer of ``track_points``,
        ``route_points``, ``waypoints``.
    crs : CRS-like, optional
        The CRS of a layer that has none (a shapefile without ``.prj``, a CSV with WKT
        geometry); overrides the file's own CRS with a warning in the log. For ``lon``/``lat``
        columns a projected CRS here means the columns are x/y in that CRS.
    default_crs : CRS-like, optional
        The CRS of a layer or WKT column that carries none; unlike ``crs``, a layer with
        its own CRS keeps it (what ``--input-crs`` declares).
    coord_system : str, default "wgs84"
        The system of longitude/latitude points: ``wgs84``, ``gcj02``, ``bd09``, ``cgcs2000``
        (aliases accepted, see :func:`geosup.crs.normalize_coord_system`). GCJ-02 and BD-09
        points are converted to WGS-84 (the ``lon``/``lat`` columns too).
    time_columns : sequence of str
        Columns parsed to tz-aware UTC. Strings with an offset are converted; naive ones are
        read in ``tz`` (logged once per column). Absent optional columns are skipped.
    tz : str, default "Asia/Shanghai"
        The zone of naive times.
    numeric_columns : sequence of str
        Columns parsed to float; a value that is not a number rejects the row, a missing value
        stays NaN (unless the column is required).
    id_column : str, optional
        The row's stable id (used as the ledger key). Missing ids are rejected, and so are
        later rows repeating an id (the first is kept).
    lon, lat : str, default "lon", "lat"
        Canonical names of the coordinate columns.
    geometry : str, default "auto"
        ``"auto"``: the layer's geometry, else a WKT column named ``geometry``/``wkt``, else
        points from ``lon``/``lat`` when both exist, else no geometry. ``"lonlat"``: points
        from ``lon``/``lat`` (required). ``"none"``: return a plain DataFrame. Any other value
        names a column holding WKT.
    geometry_optional : bool, default False
        Keep rows whose geometry is missing or empty (as ``None``) instead of rejecting
        them, for inputs where a geometry is one of several ways to locate a row (e.g.
        declarations by parcel id).
    combine_columns : mapping of str to sequence of str, optional
        Canonical name -> source columns joined with a space before parsing, e.g.
        ``{"time": ["Transaction Date", "Transaction Time"]}``.
    ledger : RejectsLedger, optional
        Where rejected rows go; a new ledger by default.
    sep : str, optional
        CSV delimiter; sniffed from the header line (``,``, ``;``, tab, ``|``) by default.
    encoding : str, optional
        Text encoding of a CSV; UTF-8 (with or without BOM), UTF-16 with BOM or GB18030 are
        recognised by default.
    units : mapping of str to str, optional
        Canonical column -> the unit the source uses (``{"litres": "gal", "odometer_km":
        "mi"}``); the column is parsed as a number and converted to geosup's unit for it
        (:data:`UNIT_COLUMNS`: litres, km, km/h, l/100km, m² …). The conversion is logged.
    target_units : mapping of str to str, optional
        Canonical column -> the unit to convert to, for columns whose unit is chosen per run
        (``{"declared_area": "mu"}``, the run's area unit); others default to
        :data:`UNIT_COLUMNS`.
    crs_hint : str, optional
        How the user declares this input's CRS, named in the error when it has none (e.g.
        ``"--input-crs parcels=EPSG:<code>"``); default the ``crs=`` argument.

    Returns
    -------
    ReadResult
        The usable rows (a GeoDataFrame when there is geometry, else a DataFrame; with
        ``_row``), the counts, the ledger and the geometry repairs.

    Raises
    ------
    DataSourceError
        The input cannot be used at all: missing path, a directory, unreadable, empty (no
        rows), content that does not match the extension, ambiguous layer.
    SchemaError
        A mapped or required column is missing, or a unit is declared for a missing column.
    CRSError
        A geometry layer has no CRS and ``crs`` is not given, or ``coord_system`` is unknown
        or does not fit the layer.
    ConfigError
        A declared unit is unknown or does not fit its column's quantity.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "stations.csv"
    >>> _ = path.write_text("id,lon,lat\\nS1,116.40,39.90\\nS1,116.41,39.91\\nS2,0,0\\n")
    >>> result = read_table(path, id_column="id")
    >>> result.frame[["_row", "id"]].values.tolist(), result.frame.crs.to_epsg()
    ([[1, 'S1']], 4326)
    >>> result.ledger.frame()[["row", "key", "reason"]].values.tolist()
    [[3, 'S2', 'lon/lat is exactly (0, 0), a placeholder for a missing position'], \
[2, 'S1', "duplicate id 'S1' (first on row 1)"]]
    """
    loaded = _load(source, layer=layer, sep=sep, encoding=encoding)
    name = name or loaded.name
    display = loaded.display
    ledger = RejectsLedger() if ledger is None else ledger
    start = len(ledger)
    raw = loaded.raw
    tokens = loaded.text

    # Schema and CRS first: a read that raises leaves the ledger untouched.
    layer_geoms: np.ndarray | None = None
    layer_crs: pyproj.CRS | None = None
    geometry_name = "geometry"
    active = _active_geometry(raw)
    if active is not None:
        layer_geoms = _geometry_array(raw)
        layer_crs = raw.crs
        geometry_name = active
        attrs = pd.DataFrame(raw.drop(columns=[geometry_name, ROW_COLUMN]))
    else:
        attrs = pd.DataFrame(raw.drop(columns=[ROW_COLUMN]))
    available = [str(c) for c in attrs.columns]
    work, sources = _map_columns(attrs, columns, combine_columns, display=display, tokens=tokens)
    _require_columns(work, required, id_column, has_geometry=layer_geoms is not None,
                     available=available, display=display)
    mode, wkt_column = _geometry_mode(
        geometry, work, has_layer=layer_geoms is not None, text=loaded.text, lon=lon, lat=lat,
        available=available, display=display,
    )
    plan = _unit_plan(units, target_units, work, display=display)
    hint = crs_hint or _CRS_HINT
    from geosup.crs import normalize_coord_system

    system = normalize_coord_system(coord_system)
    if crs is None and default_crs is not None and (
            mode == "wkt" or (mode == "layer" and layer_crs is None)):
        crs = default_crs
    try:
        declared = pyproj.CRS.from_user_input(crs) if crs is not None else None
    except pyproj.exceptions.CRSError as err:
        msg = f"crs={crs!r} for {display} is not a coordinate reference system: {err}"
        raise CRSError(msg) from err
    out_crs: pyproj.CRS | None = None
    if mode == "layer":
        out_crs = _layer_crs(raw, layer_crs, declared, display, hint=hint)
    elif mode == "wkt" and declared is None:
        msg = (
            f"{display} has WKT geometry in column {wkt_column!r} but no coordinate reference "
            f"system; declare it with {hint}"
        )
        raise CRSError(msg)

    # Rows.
    key_source = None
    if id_column is not None:
        key_source = sources.get(id_column, id_column if id_column in raw.columns else None)
    state = _Rows(raw, name=name, ledger=ledger, key_source=key_source)
    rows_in = len(raw)
    if loaded.malformed is not None and len(loaded.malformed):
        rows_in += len(loaded.malformed)
        ledger.add(
            name,
            loaded.malformed,
            f"line has more fields than the header ({len(available)}); check quoting and the "
            "delimiter",
        )
    if loaded.text and len(attrs.columns):
        state.reject(np.array(attrs.eq("").all(axis=1), dtype=bool), "blank row")
    for col in required:
        if col in work.columns:
            state.reject(_missing(work[col], tokens=tokens),
                         f"missing value in required column {col!r}")
    if id_column is not None:
        state.reject(_missing(work[id_column], tokens=tokens),
                     f"missing value in id column {id_column!r}")
    numbers = [*numeric_columns, *(c for c in plan if c not in numeric_columns)]
    converted = _convert_values(
        work, state, time_columns=time_columns, numeric_columns=numbers,
        skip=(lon, lat) if mode == "lonlat" else (), tz=tz, tokens=tokens, display=display,
    )
    for col, (unit, target, quantity) in plan.items():
        converted[col] = convert_units(converted[col], unit, target, quantity=quantity)
        if unit != target:
            logger.info("%s: column %r converted from %s to %s", display, col, unit, target)
        else:
            logger.info("%s: column %r declared in %s, as held", display, col, unit)

    # Geometry.
    geoms: np.ndarray | None = None
    repairs = _empty_ledger_frame(REPAIR_COLUMNS)
    if mode == "lonlat":
        geoms, out_crs = _points_from_lonlat(
            work, state, converted, lon=lon, lat=lat, system=system, declared=declared,
            tokens=tokens, display=display,
        )
    elif mode in ("wkt", "layer"):
        if mode == "wkt":
            geoms = _geometry_from_wkt(work, state, str(wkt_column), declared=declared,
                                       tokens=tokens, display=display,
                                       optional=geometry_optional, hint=hint)
            out_crs = declared
            geometry_name = "geometry"
        else:
            geoms = layer_geoms
        keys = work[id_column] if id_column is not None else None
        geoms, repairs = _validate_geometries(geoms, state, keys=keys,
                                              optional=geometry_optional)
        points = state.alive & (shapely.get_type_id(geoms) == shapely.GeometryType.POINT)
        if out_crs is not None and out_crs.is_geographic and points.any():
            x = np.full(len(state), np.nan)
            y = np.full(len(state), np.nan)
            x[points] = shapely.get_x(geoms[points])
            y[points] = shapely.get_y(geoms[points])
            state.check_lonlat(x, y)
        if system in ("gcj02", "bd09"):
            from geosup.crs import convert_points_frame

            usable = gpd.GeoSeries(np.where(state.alive, geoms, None), crs=out_crs)
            geoms = _geometry_array(convert_points_frame(usable, system=system, what=display))
            out_crs = pyproj.CRS.from_epsg(4326)
            logger.info("%s: converted %s geometry to WGS-84", display, system)
    if id_column is not None:
        _reject_duplicate_ids(work, state, id_column)

    frame = _assemble(
        work, state, converted, text=loaded.text,
        drop=[wkt_column] if wkt_column is not None else [], geoms=geoms, crs=out_crs,
        geometry_name=geometry_name,
    )
    rows_rejected = len(ledger) - start
    if len(repairs):
        warnings.warn(
            f"{len(repairs)} invalid geometries in {name} were repaired with make_valid; "
            "ReadResult.repairs lists which and how",
            GeometryRepairWarning,
            stacklevel=2,
        )
    logger.info("%s: %d rows in = %d used + %d rejected", name, rows_in, len(frame),
                rows_rejected)
    return ReadResult(
        frame=frame,
        source=name,
        rows_in=rows_in,
        rows_used=len(frame),
        rows_rejected=rows_rejected,
        ledger=ledger,
        repairs=repairs,
        source_rows=SourceRows(raw, name=name),
        units={col: unit for col, (unit, _, _) in plan.items()},
    )
