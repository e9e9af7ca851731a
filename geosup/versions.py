"""Versions of geosup and the libraries it stands on (``geosup --show-versions``)."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

__all__ = ["show_versions", "versions"]

_PACKAGES = ("geosup", "numpy", "pandas", "geopandas", "shapely", "pyogrio", "pyproj",
             "rasterio", "psycopg", "folium", "movingpandas", "numba", "click", "pyarrow")


def versions(*, store: str | None = None) -> dict[str, str]:
    """Python, GEOS, GDAL, PROJ, PostGIS (when ``store`` is a reachable database)
    and package versions.

    Examples
    --------
    >>> found = versions()
    >>> [k for k in ("python", "GEOS", "PROJ", "geosup") if k in found]
    ['python', 'GEOS', 'PROJ', 'geosup']
    """
    import pyogrio
    import pyproj
    import shapely

    out = {"python": sys.version.split()[0], "platform": platform.platform(),
           "GEOS": shapely.geos_version_string,
           "GDAL (pyogrio)": pyogrio.__gdal_version_string__,
           "PROJ": pyproj.proj_version_str}
    try:
        import rasterio

        out["GDAL (rasterio)"] = rasterio.__gdal_version__
    except ImportError:  # pragma: no cover - a declared dependency
        out["GDAL (rasterio)"] = "not installed"
    if store:
        from geosup.store import is_database_url

        if is_database_url(store):
            from geosup.store.postgis import server_versions

            try:
                out.update(server_versions(store))
            except Exception as err:  # noqa: BLE001 - report, never fail
                out["PostGIS"] = f"not reachable ({type(err).__name__})"
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def show_versions(*, store: str | None = None) -> str:
    """:func:`versions` as aligned text.

    Examples
    --------
    >>> print(show_versions())  # doctest: +ELLIPSIS
    python ...
    GEOS ...
    """
    items = versions(store=store)
    width = max(len(k) for k in items)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in items.items())
