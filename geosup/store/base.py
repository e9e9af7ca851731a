"""The store API that both backends implement.

A store keeps the alerts, their append-only review history, the runs, the rejects
ledger and named input layers. Everything a run writes happens in one
transaction: :meth:`Store.run` commits when its block ends and rolls back when it
raises, so a failed run leaves the store exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import geopandas as gpd
import pandas as pd

from geosup.alerts import (
    ALERT_COLUMNS,
    SEVERITIES,
    STATUSES,
    check_transition,
    normalize_alert_frame,
)
from geosup.errors import AlertNotFoundError, ValidationError

__all__ = [
    "LAYER_NAME",
    "REJECT_COLUMNS",
    "RUN_COLUMNS",
    "Run",
    "Store",
    "UpsertCounts",
    "describe_input",
    "safe_url",
]

#: Columns of the rejects ledger as stored (``run_id`` added to the io ledger's columns).
REJECT_COLUMNS: tuple[str, ...] = ("run_id", "source", "row", "key", "reason", "raw")

#: Columns of the runs table.
RUN_COLUMNS: tuple[str, ...] = (
    "run_id", "command", "params", "inputs", "started_at", "ended_at", "counts",
)

#: Allowed names of input layers (also table names): lower case, digits, underscore.
LAYER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,56}$")

#: Table names a layer may not take.
RESERVED_NAMES = frozenset({"alerts", "alert_events", "runs", "rejects", "layers"})

_FILTERS = ("rule", "domain", "status", "severity", "unit", "period", "subject_id")


@dataclass(frozen=True)
class UpsertCounts:
    """What :meth:`Run.write_alerts` did."""

    inserted: int
    updated: int


def safe_url(url: str) -> str:
    """Return ``url`` without its password (user info and ``password=`` parameter).

    A URL too malformed to parse loses everything between ``//`` and ``@`` instead.

    Examples
    --------
    >>> safe_url("postgresql://inspector:s3cret@db.example:5433/audit?password=x#geosup")
    'postgresql://inspector@db.example:5433/audit#geosup'
    >>> safe_url("postgresql://u:pw@[bad/db")
    'postgresql://***@[bad/db'
    """
    text = str(url)
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        text = re.sub(r"//[^/@]*@", "//***@", text)
        return re.sub(r"(?i)(password=)[^&#]*", r"\1***", text)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hostinfo = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{hostinfo}" if user else hostinfo
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(k.lower() == "password" for k, _ in pairs):
        query = urlencode([(k, v) for k, v in pairs if k.lower() != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_input(source: str | Path | Sequence[str | Path], *, name: str | None = None,
                   hash_limit: int | None = None) -> dict[str, Any]:
    """Describe an input for the runs table: name, path, size in bytes, SHA-256.

    Parameters
    ----------
    source : str, Path or sequence of them
        A file; a folder (a partitioned dataset: every file under it); several files
        that make one input (an image of one file per band); or a ``postgresql://`` URL.
    name : str, optional
        The input's name (default: the file or folder name).
    hash_limit : int, optional
        Leave out the hash of inputs larger than this many bytes (default: hash all;
        SHA-256 runs at about 1.8 GB/s here).

    Returns
    -------
    dict
        ``name``, ``path``, ``size`` and ``sha256``. A folder or several files also
        give ``files`` (how many); their ``sha256`` is the hash of the list of
        ``sha256  relative-path`` lines (``sha256sum``'s format), sorted by path, so
        one changed partition changes it. Database URLs are recorded without their
        password, size or hash.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.csv").write_text("id\\n1\\n")
    >>> info = describe_input(folder / "a.csv")
    >>> info["size"], info["sha256"][:12]
    (5, '7cde7fb64fd8')
    >>> describe_input(folder)["files"]
    1
    """
    if not isinstance(source, (str, Path)):
        paths = [Path(p) for p in source]
        if len(paths) == 1:
            return describe_input(paths[0], name=name, hash_limit=hash_limit)
        files = [(str(p.resolve()), p) for p in paths]
        label = name or "+".join(p.name for p in paths)
        return _describe_files(label, [str(p.resolve()) for p in paths], files, hash_limit)
    text = str(source)
    if re.match(r"^postgres(ql)?://", text, re.IGNORECASE):
        safe = safe_url(text)
        return {"name": name or safe, "path": safe, "size": None, "sha256": None}
    path = Path(text)
    if path.is_dir():
        files = [(f.relative_to(path).as_posix(), f) for f in sorted(path.rglob("*"))
                 if f.is_file()]
        return _describe_files(name or path.name, str(path.resolve()), files, hash_limit)
    info: dict[str, Any] = {"name": name or path.name, "path": str(path.resolve()),
                            "size": None, "sha256": None}
    if path.is_file():
        info["size"] = path.stat().st_size
        if hash_limit is None or info["size"] <= hash_limit:
            info["sha256"] = _file_digest(path)
    return info


def _describe_files(name: str, path: str | list[str], files: list[tuple[str, Path]],
                    hash_limit: int | None) -> dict[str, Any]:
    """Size and manifest hash of several files making one input."""
    files = [(key, f) for key, f in files if f.is_file()]
    size = sum(f.stat().st_size for _, f in files)
    sha = None
    if hash_limit is None or size <= hash_limit:
        manifest = "".join(f"{_file_digest(f)}  {key}\n" for key, f in sorted(files))
        sha = hashlib.sha256(manifest.encode()).hexdigest()
    return {"name": name, "path": path, "size": size, "sha256": sha, "files": len(files)}


def check_layer_name(name: str) -> str:
    """Return ``name`` if it can name a layer table, else raise ValidationError."""
    if not LAYER_NAME.match(name) or name in RESERVED_NAMES or name.startswith(("gpkg", "rtree")):
        msg = (f"{name!r} cannot name a layer: use lower-case letters, digits and '_', "
               f"starting with a letter, and none of {', '.join(sorted(RESERVED_NAMES))}")
        raise ValidationError(msg)
    return name


def check_filters(filters: Mapping[str, Any]) -> dict[str, list[str]]:
    """Normalise alert filters to lists of strings and check known values."""
    out: dict[str, list[str]] = {}
    for key, value in filters.items():
        if key not in _FILTERS:
            msg = f"unknown alert filter {key!r}; use one of: {', '.join(_FILTERS)}"
            raise ValidationError(msg)
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue
        values = [value] if isinstance(value, str) else [str(v) for v in value]
        allowed = {"status": STATUSES, "severity": SEVERITIES}.get(key)
        if allowed is not None:
            for v in values:
                if v not in allowed:
                    msg = f"unknown {key} {v!r}; use one of: {', '.join(allowed)}"
                    raise ValidationError(msg)
        out[key] = values
    return out


def check_rejects(rejects: pd.DataFrame) -> pd.DataFrame:
    """Return the rejects ledger rows with exactly the stored text columns."""
    need = ("source", "row", "key", "reason", "raw")
    missing = [c for c in need if c not in rejects.columns]
    if missing:
        msg = f"rejects need the column(s) {', '.join(missing)}"
        raise ValidationError(msg)
    out = rejects.loc[:, list(need)].copy()
    out["row"] = pd.to_numeric(out["row"], errors="coerce").astype("Int64")
    for c in ("source", "key", "reason", "raw"):
        out[c] = out[c].astype("string").fillna("")
    return out


@dataclass
class Run:
    """One run in progress, handed out by :meth:`Store.run`.

    Everything written through it lands in the store only if the run's block
    ends without an exception.
    """

    store: Store
    run_id: str
    command: str
    started_at: pd.Timestamp
    counts: dict[str, Any] = field(default_factory=dict)

    def write_alerts(self, alerts: gpd.GeoDataFrame) -> UpsertCounts:
        """Insert new alerts and refresh known ones, keeping their review state."""
        missing = [c for c in ALERT_COLUMNS if c not in alerts.columns]
        if missing:
            msg = f"not an alert table: missing {', '.join(missing)}"
            raise ValidationError(msg)
        frame = alerts.copy()
        frame["run_id"] = self.run_id
        frame["last_seen"] = self.started_at
        frame["first_seen"] = self.started_at
        frame = normalize_alert_frame(frame)
        result = self.store._upsert_alerts(frame, run_id=self.run_id, at=self.started_at)
        tally = self.counts.setdefault("alerts", {"inserted": 0, "updated": 0})
        tally["inserted"] += result.inserted
        tally["updated"] += result.updated
        return result

    def add_rejects(self, rejects: pd.DataFrame) -> int:
        """Append rows of the rejects ledger (source, row, key, reason, raw)."""
        frame = check_rejects(rejects)
        if len(frame):
            frame.insert(0, "run_id", self.run_id)
            self.store._insert_rejects(frame)
        return len(frame)

    def record_input(self, source: str, *, rows_in: int, rows_used: int,
                     rows_rejected: int) -> None:
        """Record how many rows of an input came in, were used and were rejected."""
        if rows_in != rows_used + rows_rejected:
            msg = (f"{source}: {rows_in} rows in but {rows_used} used + "
                   f"{rows_rejected} rejected; every row must be accounted for")
            raise ValidationError(msg)
        self.counts.setdefault("inputs", {})[source] = {
            "rows_in": int(rows_in), "rows_used": int(rows_used),
            "rows_rejected": int(rows_rejected)}

    def write_layer(self, name: str, frame: gpd.GeoDataFrame, *,
                    id_column: str | None = None) -> int:
        """Store (replace) a named input layer; returns the number of rows."""
        check_layer_name(name)
        if isinstance(frame, gpd.GeoDataFrame) and frame.crs is None:
            msg = f"layer {name!r} has no coordinate reference system"
            raise ValidationError(msg)
        self.store._write_layer(name, frame, run_id=self.run_id, id_column=id_column)
        self.counts.setdefault("layers", {})[name] = len(frame)
        return len(frame)


class Store(ABC):
    """Where alerts, review history, runs, rejects and input layers live.

    Use :func:`geosup.store.open_store` to get one. Stores are context managers.
    """

    url: str

    # -- lifecycle -------------------------------------------------------------------
    @abstractmethod
    def init(self) -> None:
        """Create the schema; safe to call again on an existing store."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ------------------------------------------------------------------------
    @contextmanager
    def run(self, command: str, *, inputs: Sequence[Mapping[str, Any]] = (),
            params: Mapping[str, Any] | None = None,
            started_at: pd.Timestamp | None = None) -> Iterator[Run]:
        """Open a run: one transaction that commits at the end of the block.

        Parameters
        ----------
        command : str
            What ran, e.g. ``"farmland reconcile"``.
        inputs : sequence of dict
            The inputs, as :func:`describe_input` gives them.
        params : dict, optional
            The options the command ran with (JSON-serialisable).
        started_at : Timestamp, optional
            When the command started (default: now). A command that reads and checks
            its inputs before it writes passes its own start time.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from geosup.store import open_store
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> with open_store(folder / "s.gpkg") as store:
        ...     with store.run("io") as run:
        ...         run.record_input("parcels", rows_in=3, rows_used=2, rows_rejected=1)
        ...     store.runs()["command"].tolist()
        ['io']
        """
        started = (pd.Timestamp.now(tz="UTC") if started_at is None
                   else pd.Timestamp(started_at).tz_convert("UTC")).floor("ms")
        run = Run(store=self, run_id=uuid.uuid4().hex, command=command, started_at=started)
        self._begin()
        try:
            yield run
            ended = pd.Timestamp.now(tz="UTC").floor("ms")
            self._insert_run({
                "run_id": run.run_id, "command": command,
                "params": json.dumps(dict(params or {}), sort_keys=True, default=str),
                "inputs": json.dumps(list(inputs), default=str),
                "started_at": started, "ended_at": ended,
                "counts": json.dumps(run.counts, sort_keys=True),
            })
        except BaseException:
            self._rollback()
            raise
        else:
            self._commit()

    # -- reading ---------------------------------------------------------------------
    def alerts(self, **filters: Any) -> gpd.GeoDataFrame:
        """Alerts matching every given filter (rule, domain, status, severity, unit,
        period, subject_id; each a string or a list of strings), highest severity and
        score first."""
        frame = normalize_alert_frame(self._select_alerts(check_filters(filters)))
        if len(frame):
            rank = frame["severity"].map({s: i for i, s in enumerate(SEVERITIES)})
            order = pd.DataFrame({"r": -rank.astype(float), "s": -frame["score"].fillna(-1),
                                  "rule": frame["rule"], "id": frame["alert_id"]})
            frame = frame.loc[order.sort_values(["r", "s", "rule", "id"]).index]
        return frame.reset_index(drop=True)

    def alert(self, alert_id: str) -> pd.Series:
        """One alert by id; :class:`AlertNotFoundError` if there is none."""
        frame = normalize_alert_frame(self._select_alerts({"alert_id": [alert_id]}))
        if not len(frame):
            msg = f"no alert with id {alert_id!r} in {self.url}"
            raise AlertNotFoundError(msg)
        return frame.iloc[0]

    @abstractmethod
    def events(self, alert_id: str | None = None) -> pd.DataFrame:
        """The review history, oldest first (of one alert or of all)."""

    @abstractmethod
    def runs(self) -> pd.DataFrame:
        """Every run that completed, oldest first."""

    @abstractmethod
    def rejects(self, *, run_id: str | None = None) -> pd.DataFrame:
        """The rejects ledger (of one run or of all)."""

    @abstractmethod
    def layers(self) -> pd.DataFrame:
        """The registry of stored input layers (name, rows, crs, run_id, written_at)."""

    @abstractmethod
    def read_layer(self, name: str) -> gpd.GeoDataFrame | pd.DataFrame:
        """A stored input layer."""

    # -- review ----------------------------------------------------------------------
    def review(self, alert_id: str, *, status: str, by: str, note: str | None = None,
               at: pd.Timestamp | None = None) -> dict[str, Any]:
        """Move an alert to ``status``, recording who, when and why.

        Raises
        ------
        AlertNotFoundError
            No such alert.
        TransitionError
            The workflow does not allow the move.
        """
        if not by or not str(by).strip():
            msg = "a review needs the reviewer's name (--by)"
            raise ValidationError(msg)
        at = pd.Timestamp.now(tz="UTC") if at is None else pd.Timestamp(at).tz_convert("UTC")
        at = at.floor("ms")
        self._begin()
        try:
            current = self._current_status(alert_id)
            if current is None:
                msg = f"no alert with id {alert_id!r} in {self.url}"
                raise AlertNotFoundError(msg)
            check_transition(current, status)
            event = {"alert_id": alert_id, "at": at, "by": str(by), "from_status": current,
                     "to_status": status, "note": note}
            self._apply_review(event)
        except BaseException:
            self._rollback()
            raise
        self._commit()
        return event

    # -- backend primitives ------------------------------------------------------------
    @abstractmethod
    def _begin(self) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @abstractmethod
    def _insert_run(self, row: dict[str, Any]) -> None: ...

    @abstractmethod
    def _upsert_alerts(self, alerts: gpd.GeoDataFrame, *, run_id: str,
                       at: pd.Timestamp) -> UpsertCounts: ...

    @abstractmethod
    def _insert_rejects(self, rejects: pd.DataFrame) -> None: ...

    @abstractmethod
    def _write_layer(self, name: str, frame: pd.DataFrame, *, run_id: str,
                     id_column: str | None) -> None: ...

    @abstractmethod
    def _select_alerts(self, filters: Mapping[str, list[str]]) -> pd.DataFrame: ...

    @abstractmethod
    def _current_status(self, alert_id: str) -> str | None: ...

    @abstractmethod
    def _apply_review(self, event: Mapping[str, Any]) -> None:
        """Update the alert's review columns and append the event, in the open
        transaction."""
