"""Make a folium map self-contained: vendored Leaflet & co. inlined, no CDN link left.

folium takes every script and style sheet from a CDN (a blank page without internet)
and its ``embedded`` rendering is broken in 0.20. :func:`make_offline` replaces the
CDN links of one map instance (the class attributes stay untouched) by the files
vendored in ``maps/assets`` (see ``maps/assets/README.md`` for versions and
licences), inlined as ``<script>``/``<style>`` so that the single HTML file works
from ``file://``.

Each inlined file is preceded by an HTML comment with its licence notice (package,
version, licence and the full licence text shipped beside it in ``maps/assets``), so
the notices travel with every page.

Only what the page uses is inlined: Leaflet always; supercluster when the review map
has point alerts; Leaflet.markercluster when a folium ``MarkerCluster`` is on the map;
jQuery only when a folium ``Popup`` (whose template calls ``$``) is on the map.
Bootstrap, Font Awesome, glyphicons and awesome-markers are not vendored: nothing on
the review map uses them. An element that needs an asset
with no vendored copy raises :class:`OfflineAssetError` instead of silently
leaving a CDN link in the page.

Examples
--------
>>> import folium
>>> m = folium.Map(tiles=None)
>>> html = make_offline(m).get_root().render()
>>> "cdn.jsdelivr" in html, "<script>" in html
(False, True)
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import folium
from branca.element import CssLink, Element, Figure, JavascriptLink
from folium.elements import JSCSSMixin

from geosup.errors import GeosupError

__all__ = [
    "ASSETS",
    "ASSET_DIR",
    "CDN",
    "CSP",
    "LICENCES",
    "OfflineAssetError",
    "RawHTML",
    "asset_text",
    "check_no_remote",
    "inline_tag",
    "licence_comment",
    "make_offline",
    "remote_references",
    "use_online_assets",
]

#: Folder of the vendored files.
ASSET_DIR = Path(__file__).resolve().parent / "assets"

#: folium's asset names -> (kind, file under :data:`ASSET_DIR`).
ASSETS: dict[str, tuple[str, str]] = {
    "leaflet": ("js", "leaflet/leaflet.js"),
    "leaflet_css": ("css", "leaflet/leaflet.css"),
    "jquery": ("js", "jquery/jquery.min.js"),
    "markerclusterjs": ("js", "leaflet.markercluster/leaflet.markercluster.js"),
    "markerclustercss": ("css", "leaflet.markercluster/MarkerCluster.css"),
    "markerclusterdefaultcss": ("css", "leaflet.markercluster/MarkerCluster.Default.css"),
    "supercluster": ("js", "supercluster/supercluster.min.js"),
    "geosup_review_js": ("js", "geosup/review.js"),
    "geosup_review_css": ("css", "geosup/review.css"),
}

#: Licence of each vendored asset: (package, version, SPDX licence, licence files under
#: :data:`ASSET_DIR`, what the file bundles). Written before the asset in every page.
LICENCES: dict[str, tuple[str, str, str, tuple[str, ...], str]] = {
    "leaflet": ("leaflet", "1.9.4", "BSD-2-Clause", ("leaflet/LICENSE",), ""),
    "leaflet_css": ("leaflet", "1.9.4", "BSD-2-Clause", ("leaflet/LICENSE",), ""),
    "jquery": ("jquery", "3.7.1", "MIT", ("jquery/LICENSE.txt",), ""),
    "markerclusterjs": ("leaflet.markercluster", "1.5.3", "MIT",
                        ("leaflet.markercluster/MIT-LICENCE.txt",), ""),
    "markerclustercss": ("leaflet.markercluster", "1.5.3", "MIT",
                         ("leaflet.markercluster/MIT-LICENCE.txt",), ""),
    "markerclusterdefaultcss": ("leaflet.markercluster", "1.5.3", "MIT",
                                ("leaflet.markercluster/MIT-LICENCE.txt",), ""),
    "supercluster": ("supercluster", "9.1.0", "ISC",
                     ("supercluster/LICENSE", "kdbush/LICENSE"),
                     "bundles kdbush 4.1.0 (ISC, its notice follows)"),
    "geosup_review_js": ("geosup review map", "", "BSD-3-Clause", (),
                         "Copyright (c) 2026, the geosup developers"),
    "geosup_review_css": ("geosup review map", "", "BSD-3-Clause", (),
                          "Copyright (c) 2026, the geosup developers"),
}

#: Packages bundled inside another vendored file: the heading of their licence text.
_BUNDLED = {"kdbush/LICENSE": "kdbush 4.1.0 (npm package, bundled in supercluster.min.js), "
                              "licence ISC:"}

#: The same versions on a CDN, for ``online=True`` (the offline page's Leaflet, not
#: folium's default 1.9.3).
CDN: dict[str, str] = {
    "leaflet": "https://cdn.jsdelivr.net/npm/leaflet@1.9.4/dist/leaflet.js",
    "leaflet_css": "https://cdn.jsdelivr.net/npm/leaflet@1.9.4/dist/leaflet.css",
    "supercluster": "https://cdn.jsdelivr.net/npm/supercluster@9.1.0/dist/supercluster.min.js",
    "markerclusterjs":
        "https://cdn.jsdelivr.net/npm/leaflet.markercluster@1.5.3/dist/leaflet.markercluster.js",
    "markerclustercss":
        "https://cdn.jsdelivr.net/npm/leaflet.markercluster@1.5.3/dist/MarkerCluster.css",
    "markerclusterdefaultcss":
        "https://cdn.jsdelivr.net/npm/leaflet.markercluster@1.5.3/dist/MarkerCluster.Default.css",
}

#: folium.Map's default assets that an offline page drops (nothing of ours uses them).
_MAP_EXTRAS = frozenset({
    "bootstrap", "awesome_markers", "bootstrap_css", "glyphicons_css",
    "awesome_markers_font_css", "awesome_markers_css", "awesome_rotate_css",
})

#: Content-Security-Policy of an offline page: inline code only, images from data: URIs,
#: no connection anywhere. A second line of defence behind "no remote link is written".
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "img-src data: blob:; font-src data:; connect-src 'none'; base-uri 'none'; "
       "form-action 'none'")

_SOURCE_MAP = re.compile(r"^\s*//[#@] sourceMappingURL=.*$", re.MULTILINE)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_CSS_URL = re.compile(r"url\((['\"]?)(images/[A-Za-z0-9_.-]+\.png)\1\)")


class OfflineAssetError(GeosupError, ValueError):
    """A map element needs a script or style with no vendored copy."""


class RawHTML(Element):
    """An element rendered verbatim.

    branca feeds the output of a ``MacroElement``'s macros back into
    ``Element(template=...)``, i.e. through Jinja a second time: ``{{ … }}`` inside
    user text would be evaluated. Content added as ``RawHTML`` is never templated.
    """

    def __init__(self, html: str) -> None:
        super().__init__()
        self._html = html

    def render(self, **kwargs: object) -> str:
        return self._html


@cache
def asset_text(name: str) -> str:
    """The vendored file of asset ``name``, ready to inline.

    Source-map comments are dropped, CSS comments removed and the images Leaflet's
    CSS refers to (``images/layers.png`` …) become ``data:`` URIs.
    """
    try:
        kind, rel = ASSETS[name]
    except KeyError:
        msg = f"no vendored asset {name!r}; known: {', '.join(sorted(ASSETS))}"
        raise OfflineAssetError(msg) from None
    path = ASSET_DIR / rel
    text = path.read_text(encoding="utf-8")
    text = _SOURCE_MAP.sub("", text)
    if kind == "css":
        text = _CSS_COMMENT.sub("", text)

        def data_uri(match: re.Match[str]) -> str:
            png = (path.parent / match.group(2)).read_bytes()
            return f"url(data:image/png;base64,{base64.b64encode(png).decode('ascii')})"

        text = _CSS_URL.sub(data_uri, text)
    if name == "leaflet":
        text += _default_icon_js(path.parent / "images")
    closing = "</style" if kind == "css" else "</script"
    if closing in text.lower():  # pragma: no cover - guards a future vendored update
        msg = f"vendored asset {rel} contains {closing!r} and cannot be inlined"
        raise OfflineAssetError(msg)
    return text


def _default_icon_js(images: Path) -> str:
    """Point Leaflet's default marker icon at ``data:`` URIs (it looks for files)."""
    def uri(file: str) -> str:
        return "data:image/png;base64," + base64.b64encode((images / file).read_bytes()).decode()

    return (f'\n;L.Icon.Default.imagePath = "";L.Icon.Default.mergeOptions({{'
            f'iconUrl: "{uri("marker-icon.png")}", iconRetinaUrl: "{uri("marker-icon-2x.png")}", '
            f'shadowUrl: "{uri("marker-shadow.png")}"}});\n')


@cache
def licence_comment(name: str) -> str:
    """The HTML comment written before asset ``name``: package, version, licence, text.

    Examples
    --------
    >>> print(licence_comment("leaflet").splitlines()[0])
    <!-- leaflet 1.9.4 (npm package), licence BSD-2-Clause:
    """
    package, version, spdx, files, note = LICENCES[name]
    head = f"{package} {version} (npm package)" if version else package
    lines = [f"<!-- {head}, licence {spdx}:" + (f" {note}" if note and files else "")]
    if not files and note:
        lines.append(note)
    for rel in files:
        if rel in _BUNDLED:
            lines.append(_BUNDLED[rel])
        text = (ASSET_DIR / rel).read_text(encoding="utf-8").strip()
        lines.append(text.replace("--", "- -"))  # nothing can close the comment early
    return "\n".join(lines) + "\n-->"


def inline_tag(name: str) -> str:
    """``<script>…</script>`` or ``<style>…</style>`` holding asset ``name``, after its
    licence notice (:func:`licence_comment`)."""
    kind = ASSETS[name][0]
    tag = "script" if kind == "js" else "style"
    notice = licence_comment(name) if name in LICENCES else ""
    return f"{notice}<{tag} data-asset=\"{name}\">{asset_text(name)}</{tag}>"


def _walk(element: Element) -> Iterator[Element]:
    yield element
    for child in list(element._children.values()):
        yield from _walk(child)


def make_offline(m: folium.Map) -> folium.Map:
    """Replace every CDN asset of ``m``'s page by an inlined vendored copy.

    Works on this map instance only: each element's ``default_js``/``default_css``
    is emptied on the instance (never on the class) and the assets it named are
    added to the page header as inline code, with a Content-Security-Policy that
    forbids any connection. Call it after the last element was added (or again:
    it is idempotent).

    Raises
    ------
    OfflineAssetError
        An element needs an asset that is not vendored (e.g. awesome-markers icons).
    """
    figure = m.get_root()
    if not isinstance(figure, Figure):
        figure = Figure()
        m.add_to(figure)
    needed: list[str] = list(getattr(figure, "_geosup_offline_assets", []))
    uses_jquery = bool(getattr(m, "objects_to_stay_in_front", None))
    for element in _walk(figure):
        if isinstance(element, folium.Popup):
            uses_jquery = True
        if isinstance(element, folium.Icon):
            msg = ("folium.Icon needs Leaflet.awesome-markers, Bootstrap and icon fonts, "
                   "which are not vendored for offline maps; use a DivIcon or a "
                   "CircleMarker, or write the map with online=True")
            raise OfflineAssetError(msg)
        if not isinstance(element, JSCSSMixin):
            continue
        for name, url in [*element.default_js, *element.default_css]:
            if name in needed:
                continue
            if isinstance(element, folium.Map) and (name in _MAP_EXTRAS or name == "jquery"):
                continue  # folium.Map lists them for elements the review map never uses
            if name not in ASSETS:
                msg = (f"{type(element).__name__} needs {name!r} ({url}), which has no "
                       "vendored copy for offline maps; write the map with online=True")
                raise OfflineAssetError(msg)
            needed.append(name)
        element.default_js = []  # instance attributes: the class keeps folium's lists
        element.default_css = []
    if uses_jquery and "jquery" not in needed:
        needed.insert(1 if "leaflet" in needed else 0, "jquery")
    figure._geosup_offline_assets = needed  # type: ignore[attr-defined]
    for key, child in list(figure.header._children.items()):
        if isinstance(child, (JavascriptLink, CssLink)):  # left by an earlier render
            del figure.header._children[key]
    figure.header.add_child(RawHTML(
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'), name="geosup_csp")
    css = [n for n in needed if ASSETS[n][0] == "css"]
    js = [n for n in needed if ASSETS[n][0] == "js"]
    for name in (*css, *js):
        figure.header.add_child(RawHTML(inline_tag(name)), name=f"geosup_asset_{name}")
    return m


def use_online_assets(m: folium.Map) -> folium.Map:
    """Make an online map load only what it uses, from a CDN: Leaflet 1.9.4 (the
    version the offline page inlines), none of folium's Bootstrap, Font Awesome,
    glyphicons, awesome-markers or folium CSS. Works on this instance only."""
    m.default_js = [("leaflet", CDN["leaflet"])]
    m.default_css = [("leaflet_css", CDN["leaflet_css"])]
    return m


_REMOTE = re.compile(
    r"""\b(?:src|srcset|poster|data|action|formaction|background)\s*=\s*["']?\s*(?:https?:)?//"""
    r"""|<link\b[^>]*?\bhref\s*=\s*["']?\s*(?:https?:)?//"""
    r"""|url\(\s*["']?\s*(?:https?:)?//|@import\b|http-equiv\s*=\s*["']?refresh""",
    re.IGNORECASE)


def remote_references(html: str) -> list[str]:
    """Attributes, CSS ``url()`` and ``@import`` in ``html`` that would load from a network.

    Links a reader may follow (``<a href>``) and XML namespaces are not loads.

    Examples
    --------
    >>> remote_references('<script src="https://cdn.example/x.js"></script>')
    ['src="https://cdn.example/x.js']
    >>> remote_references('<a title="x">y</a>')
    []
    """
    out = []
    for match in _REMOTE.finditer(html):
        tail = re.match(r"[^\"'\s)>]*", html[match.end():])
        out.append(match.group(0) + (tail.group(0)[:80] if tail else ""))
    return out


def check_no_remote(html: str) -> None:
    """Raise :class:`OfflineAssetError` if ``html`` would load anything from a network."""
    found = remote_references(html)
    if found:
        msg = f"the offline page still refers to the network: {found[0]}"
        raise OfflineAssetError(msg)
