"""The whole requisition compare: real OSCD pairs ranked against their labels, and bad input."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from pyproj import Transformer

from geosup.crs import metric_crs_for
from geosup.errors import CRSError, GeosupError
from imagery.align import ExtentError
from imagery.catalog import BandError, Catalog, ImageEntry
from imagery.compare import compare
from imagery.stats import zonal_stats

TEN_M = ("B02", "B03", "B04", "B08")


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    y = np.asarray(labels, bool)
    r = pd.Series(np.asarray(scores, float)).rank().to_numpy()
    npos, nneg = int(y.sum()), int((~y).sum())
    return float((r[y].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def oscd_case(shared_data: Path, city: str, tmp: Path) -> dict:
    """OSCD city: the 10 m band set of both dates, a 60 m grid of claims, labelled shares."""
    folder = shared_data / "imagery" / "oscd" / city
    entries = []
    for e in Catalog.from_oscd(folder):  # dates from dates.txt, never from file names
        keep = [i for i, b in enumerate(e.bands) if b in TEN_M]
        entries.append(e.with_options(paths=tuple(e.paths[i] for i in keep),
                                      bands=tuple(e.bands[i] for i in keep)))
    with rasterio.open(entries[0].paths[0]) as ds:
        transform, crs, bounds = ds.transform, ds.crs, ds.bounds
    utm = metric_crs_for(tuple(bounds), crs=crs, family="utm")
    x0, y0, x1, y1 = Transformer.from_crs(crs, utm, always_xy=True).transform_bounds(*bounds)
    xs, ys = np.meshgrid(np.arange(x0, x1 - 60, 60.0), np.arange(y0, y1 - 60, 60.0))
    cells = shapely.box(xs.ravel(), ys.ravel(), xs.ravel() + 60, ys.ravel() + 60)
    claims = gpd.GeoDataFrame({"claim_id": [f"{city}-{i:05d}" for i in range(len(cells))],
                               "project_id": city, "claimant_id": "n/a", "item": "building",
                               "amount": 1000.0}, geometry=cells, crs=utm)
    inside = shapely.within(claims.to_crs(crs).geometry.to_numpy(), shapely.box(*bounds))
    claims = claims.loc[inside].reset_index(drop=True)
    # The label has no georeference: it is the date-1 B02 grid (README caveat); 2 = change.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(folder / "cm" / f"{city}-cm.tif") as ds:
            cm = ds.read(1)
    label = tmp / f"{city}-label.tif"
    with rasterio.open(label, "w", driver="GTiff", width=cm.shape[1], height=cm.shape[0],
                       count=1, dtype="float32", crs=crs, transform=transform) as dst:
        dst.write((cm == 2).astype("float32"), 1)
    share = zonal_stats(label, claims, id_column="claim_id")["mean"]
    notice = entries[0].acquired_on + dt.timedelta(days=30)
    return {"entries": entries, "claims": claims, "share": share, "notice": notice}


@pytest.fixture(scope="module", params=[("rennes", 0.95), ("bordeaux", 0.85)],
                ids=["rennes", "bordeaux"])
def oscd(request, shared_data, tmp_path_factory):
    city, target = request.param
    tmp = tmp_path_factory.mktemp(city)
    case = oscd_case(shared_data, city, tmp)
    result = compare(case["entries"], case["claims"], notice_date=case["notice"],
                     workdir=tmp / "work", max_chips=300)
    return {**case, "result": result, "target": target, "city": city, "tmp": tmp}


def test_alert_ranking_reaches_the_auc_target(oscd):
    result, share = oscd["result"], oscd["share"]
    ranking = result.ranking.set_index("claim_id")
    assert len(ranking) == len(oscd["claims"]) and not ranking["inconclusive"].any()
    changed = share.loc[ranking.index].to_numpy() >= 0.10  # a tenth of the cell or more
    assert 100 < changed.sum() < len(changed) / 5
    # the final alert queue: a claim's highest alert score, 0 without alert
    per_claim = result.alerts.groupby("subject_id")["score"].max()
    queue = per_claim.reindex(ranking.index).fillna(0.0).to_numpy()
    assert (queue == ranking["alert_score"].to_numpy()).all()
    got = auc(changed, queue)
    print(f"{oscd['city']}: alert-ranking AUC {got:.4f}, change-score AUC "
          f"{auc(changed, ranking['change_score'].to_numpy()):.4f}, "
          f"{len(result.alerts)} alerts of {len(ranking)} claims")
    assert got >= oscd["target"]
    # alerts name the claim, are ranked by score and carry the measured values
    alerts = result.alerts
    assert alerts["rule"].eq("requisition.built_after_notice").all()
    assert alerts["subject_type"].eq("claim").all() and alerts["subject_id"].is_unique
    assert alerts["score"].between(0, 1).all() and alerts.crs.to_epsg() == 4326
    ev = json.loads(alerts.sort_values("score").iloc[-1]["evidence"])
    dates = (oscd["entries"][0].acquired_on.isoformat(),
             oscd["entries"][1].acquired_on.isoformat())
    assert (ev["before_date"], ev["after_date"]) == dates
    assert ev["change_share"] >= 0.05 and ev["builtup_index"] == "dbright"


def test_chips_are_referenced_for_the_top_of_the_queue(oscd):
    alerts = oscd["result"].alerts.sort_values("score", ascending=False)
    evs = [json.loads(e) for e in alerts["evidence"]]
    with_chips = [e for e in evs if "chip_before" in e]
    assert len(with_chips) == min(300, len(evs))
    assert all("chip_before" in e for e in evs[:300])  # the highest scores get them
    e = with_chips[0]
    assert Path(e["chip_before"]).is_file() and Path(e["chip_after"]).is_file()
    assert Path(e["chip_before"]).read_bytes()[:4] == b"\x89PNG"
    (s, w), (n, east) = e["chip_bounds"]
    assert 40 < s < n < 50 and -2 < w < east < 1  # Brittany / Gironde, in degrees


def test_rows_in_equal_used_plus_rejected(oscd):
    c = oscd["result"].counts["claims"]
    assert c == {"rows_in": len(oscd["claims"]), "rows_used": len(oscd["claims"]),
                 "rows_rejected": 0}


# ---------------------------------------------------------------------------------------------
# Bad input (small synthetic rasters)
# ---------------------------------------------------------------------------------------------

X0, Y0 = 500000.0, 3500064.0


def raster(path: Path, data: np.ndarray, *, day: str | None, crs: str | None = "EPSG:32650",
           x0: float = X0, nodata: float | None = None) -> Path:
    prof = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
            "count": data.shape[0], "dtype": data.dtype.name,
            "transform": rasterio.Affine(0.5, 0, x0, 0, -0.5, Y0), "tiled": True,
            "blockxsize": 64, "blockysize": 64}
    if crs:
        prof["crs"] = crs
    if nodata is not None:
        prof["nodata"] = nodata
    if data.shape[0] in (3, 4):
        prof["photometric"] = "RGB"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **prof) as dst:
            dst.write(data)
            if day:
                dst.update_tags(TIFFTAG_DATETIME=day)
    return path


def scene(rng: np.random.Generator, n: int = 128) -> np.ndarray:
    return rng.normal([[[60]], [[80]], [[50]], [[160]]], 3, (4, n, n))


def box(c0: float, r0: float, c1: float, r1: float) -> shapely.Polygon:
    """A box in pixel coordinates of the test grid."""
    return shapely.box(X0 + c0 * 0.5, Y0 - r1 * 0.5, X0 + c1 * 0.5, Y0 - r0 * 0.5)


@pytest.fixture
def pair(tmp_path):
    """An 8-bit before date and a 16-bit after date with a new roof and a nodata corner."""
    rng = np.random.default_rng(5)
    base = scene(rng)
    after = base + rng.normal(0, 3, base.shape)
    after[:, 20:44, 20:44] = [[[200]], [[200]], [[195]], [[190]]]
    after16 = np.clip(after * 4 + 50, 1, 65535).astype("uint16")
    after16[:, 96:, 96:] = 0  # no data in the south-east corner
    b = raster(tmp_path / "b.tif", np.clip(base, 1, 255).astype("uint8"),
               day="2024:01:10 10:00:00", nodata=0)
    a = raster(tmp_path / "a.tif", after16, day="2024:06:10 10:00:00", nodata=0)
    return [ImageEntry.from_path(b), ImageEntry.from_path(a)], tmp_path


def claims_frame(**geoms) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"claim_id": list(geoms), "project_id": "P1", "claimant_id": "A",
                             "item": "building", "claimed_area_m2": 80.0, "amount": 1e4},
                            geometry=list(geoms.values()), crs="EPSG:32650")


def test_8bit_beside_16bit_outside_and_all_nodata(pair):
    entries, tmp = pair
    claims = claims_frame(roof=box(16, 16, 48, 48), field=box(60, 10, 90, 40),
                          nodata=box(100, 100, 124, 124),
                          outside=shapely.box(X0 + 900, Y0 + 900, X0 + 920, Y0 + 920))
    claims.loc[1, "item"] = "青苗"  # young crops, unchanged
    projects = pd.DataFrame({"project_id": ["P1"], "notice_date": ["2024-03-15"]})
    result = compare(entries, claims, projects=projects, workdir=tmp / "w")
    got = set(zip(result.alerts["rule"], result.alerts["subject_id"], strict=True))
    assert ("requisition.built_after_notice", "roof") in got
    assert not {s for _, s in got} & {"field", "nodata", "outside"}
    assert result.counts["claims"] == {"rows_in": 4, "rows_used": 3, "rows_rejected": 1}
    rej = result.rejects
    assert rej[["source", "key", "reason"]].values.tolist() == [
        ["claims", "outside", "outside every image"]]
    assert int(rej["row"].iloc[0]) == 4 and json.loads(rej["raw"].iloc[0])["item"] == "building"
    assert result.inconclusive == 1
    st = result.stats.loc["nodata"]
    assert st["inconclusive"] and "no valid pixels" in st["reason"]
    rank = result.ranking.set_index("claim_id")
    assert np.isnan(rank.loc["nodata", "change_score"]) and rank.loc["nodata", "alerts"] == 0
    assert rank.loc["roof", "rank"] == 1


def test_pairs_are_picked_by_notice_date(pair, tmp_path):
    entries, _ = pair
    rng = np.random.default_rng(9)
    older = raster(tmp_path / "old.tif", np.clip(scene(rng), 1, 255).astype("uint8"),
                   day="2023:05:01 10:00:00", nodata=0)
    cat = Catalog([*entries, ImageEntry.from_path(older)])
    claims = claims_frame(roof=box(16, 16, 48, 48), late=box(60, 10, 90, 40))
    claims.loc[1, "project_id"] = "P2"
    projects = pd.DataFrame({"project_id": ["P1", "P2", "P3"],
                             "notice_date": ["2024-03-15", "2024-09-01", "not a date"]})
    result = compare(cat, claims, projects=projects, workdir=tmp_path / "w")
    assert [(p["before"], p["after"]) for p in result.pairs] == [("b", "a")]
    assert result.rejects[["source", "key", "reason"]].values.tolist() == [
        ["projects", "P3", "no usable notice_date"],
        ["claims", "late", "no image after the notice date 2024-09-01 covers the claim"]]
    assert result.counts["projects"] == {"rows_in": 3, "rows_used": 2, "rows_rejected": 1}
    # an explicit pair that does not straddle the notice date
    res2 = compare(cat, claims.iloc[:1], before="old", after="b", notice_date="2024-03-15",
                   workdir=tmp_path / "w2")
    assert res2.rejects["reason"].tolist() == [
        "the after image (2024-01-10) is not after the notice date 2024-03-15"]
    assert res2.alerts.empty


def test_raster_without_crs_is_refused(tmp_path):
    rng = np.random.default_rng(1)
    p = raster(tmp_path / "nocrs.tif", np.clip(scene(rng), 1, 255).astype("uint8"),
               day="2024:01:01 00:00:00", crs=None)
    with pytest.raises(CRSError, match="no coordinate reference system"):
        ImageEntry.from_path(p)
    entry = ImageEntry(paths=(p,), acquired_on=dt.date(2024, 1, 1),
                       bands=("red", "green", "blue", "nir"), image_id="x")
    other = ImageEntry(paths=(p,), acquired_on=dt.date(2024, 6, 1),
                       bands=("red", "green", "blue", "nir"), image_id="y")
    with pytest.raises(CRSError, match="no coordinate reference system"):
        compare([entry, other], claims_frame(c=box(1, 1, 9, 9)), notice_date="2024-03-01",
                workdir=tmp_path / "w")


def test_claims_without_crs_are_refused(pair):
    entries, tmp = pair
    claims = claims_frame(c=box(1, 1, 9, 9)).set_crs(None, allow_override=True)
    with pytest.raises(CRSError, match="claims have no coordinate reference system"):
        compare(entries, claims, notice_date="2024-03-01", workdir=tmp / "w")


def test_extents_that_do_not_overlap(pair):
    entries, tmp = pair
    rng = np.random.default_rng(2)
    far = raster(tmp / "far.tif", np.clip(scene(rng), 1, 255).astype("uint8"),
                 day="2024:06:10 10:00:00", x0=X0 + 10000)
    images = [entries[0], ImageEntry.from_path(far)]
    with pytest.raises(ExtentError, match="do not overlap") as err:
        compare(images, claims_frame(c=box(1, 1, 9, 9)), notice_date="2024-03-01",
                workdir=tmp / "w")
    assert isinstance(err.value, GeosupError) and "EPSG:32650" in str(err.value)


def test_single_band_image_names_the_missing_band(tmp_path):
    rng = np.random.default_rng(4)
    one = [raster(tmp_path / f"{n}.tif", np.clip(scene(rng)[:1], 1, 255).astype("uint8"),
                  day=d) for n, d in (("p", "2024:01:01 10:00:00"), ("q", "2024:06:01 10:00"))]
    images = [ImageEntry.from_path(p) for p in one]
    claims = claims_frame(c=box(10, 10, 40, 40))
    with pytest.raises(BandError, match=r"NDVI needs band 'red' \(B04\); image has: band1") as e:
        compare(images, claims, notice_date="2024-03-01", workdir=tmp_path / "w")
    assert "requisition.planted_after_notice" in str(e.value)
    # the change magnitude alone works on one band
    res = compare(images, claims, notice_date="2024-03-01", workdir=tmp_path / "w2",
                  rules=["built_after_notice", "deceased_claimant"])
    assert res.counts["claims"]["rows_used"] == 1


def test_unusable_claim_rows_go_to_the_ledger(pair):
    entries, tmp = pair
    claims = claims_frame(ok=box(60, 10, 90, 40), item=box(60, 50, 90, 80),
                          dup=box(10, 60, 20, 70), line=box(1, 1, 2, 2), empty=box(1, 1, 2, 2),
                          neg=box(30, 60, 40, 70))
    claims.loc[1, "item"] = "fish pond"
    claims.loc[2, "claim_id"] = "ok"
    claims.loc[3, "geometry"] = shapely.LineString([(X0, Y0 - 1), (X0 + 5, Y0 - 5)])
    claims.loc[4, "geometry"] = None
    claims.loc[5, "claimed_area_m2"] = -3.0
    projects = pd.DataFrame({"project_id": ["P1"], "notice_date": ["2024-03-15"]})
    result = compare(entries, claims, projects=projects, workdir=tmp / "w")
    reasons = dict(zip(result.rejects["row"].astype(int), result.rejects["reason"],
                       strict=True))
    assert reasons == {2: "unknown item 'fish pond'; use one of: building, greenhouse, trees, "
                          "crops, other",
                       3: "duplicate claim_id", 4: "geometry is not a polygon",
                       5: "no geometry", 6: "claimed_area_m2 is negative"}
    c = result.counts["claims"]
    assert c["rows_in"] == c["rows_used"] + c["rows_rejected"] == 6 and c["rows_used"] == 1
