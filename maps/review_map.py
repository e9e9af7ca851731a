"""The interactive review map: one self-contained HTML file, offline by default.

Alerts are drawn per rule as toggleable layers (named by domain and rule title in
the layer control), coloured by severity:

- every alert that is not a polygon (a point, a fuel alert's station point + track
  collection, a multi-point, a line) is one point of one clustered layer shared by
  all visible rules (a supercluster index built in the browser from a coordinate
  array; only the clusters of the current view become markers), placed at its point
  part, else at a point on it; cluster numbers count alerts;
- polygon alerts are one canvas GeoJSON layer per rule; a click lists every alert
  under it when polygons are stacked;
- evidence (track segments, stations, the nearest approach and a line to its
  station, declared / reference / overlap / previous-year polygons, image chips) is
  drawn for the alert that was clicked; one layer per domain shows the evidence of
  every rule switched on (on by default when there are few features; with many,
  only what lies in the view once zoomed in);
- a summary panel (counts and amount at risk per rule and per unit; alerts without
  geometry or outside the lon/lat range counted, not drawn) and a legend whose
  swatches are drawn from the same styles as the map.

Safety: popups (title, measured numbers, thresholds, status, evidence) and tooltips
are built in the browser with ``textContent``, never ``innerHTML``, from JSON data
blocks (``<script type="application/json">``, ``<`` written as ``\\u003c``), so no
user-sourced string can become markup or script. What Python writes into the page
(summary, legend, layer names) is HTML-escaped with its braces turned into entities:
folium feeds the output of its macros through Jinja a second time, so ``{{ 7*7 }}``
in a plain folium popup or layer name renders as ``49``.

Size: the data travels as columns, not one Python object per alert. What the map
needs to become interactive (the "core" block) is decoded first; details and the
review trail (blocks of ``text_chunk`` alerts) and evidence geometries (the same
blocks of alerts, coordinates as integer micro-degrees, lines delta-coded) are
decoded only when a popup, a selection or an evidence layer needs them. Blocks
above ``compress_over`` bytes are gzip-compressed and base64-encoded (inflated by
``DecompressionStream``; a browser without it gets a message, not a blank map).
The page is kept under ``max_page_bytes`` (30 MB): what does not fit is left out,
least important first (the evidence of low-severity, low-score alerts, then image
chips), with a :class:`~maps.evidence.MapWarning` and a note in the summary.

Examples
--------
>>> import geopandas as gpd, pandas as pd, shapely
>>> from geosup.alerts import make_alerts
>>> hits = gpd.GeoDataFrame({"rule": ["fuel.off_hours"], "subject_type": ["card"],
...     "subject_id": ["C-1"], "title": ["Fill at 03:12 <night>"]},
...     geometry=[shapely.Point(116.4, 39.9)], crs=4326)
>>> m = review_map(make_alerts(hits))
>>> html = m.get_root().render()
>>> "<night>" in html, "https://cdn" in html
(False, False)
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import json
import logging
import math
import re
import uuid
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from branca.element import Figure
from folium.elements import JSCSSMixin
from jinja2 import Template

from geosup.alerts import ALERT_COLUMNS, SEVERITIES
from geosup.errors import CRSError, ExportError
from maps.evidence import (
    Chip,
    MapWarning,
    alert_priority,
    evidence_features,
    image_chips,
    is_geometry_value,
    is_polygonal,
    parse_evidence,
)
from maps.offline import (
    CDN,
    RawHTML,
    check_no_remote,
    inline_tag,
    make_offline,
    use_online_assets,
)

__all__ = [
    "KEY_FIGURES",
    "LABELS",
    "ROLE_ALIASES",
    "ROLE_STYLES",
    "SEVERITY_COLOURS",
    "ReviewMap",
    "canonical_role",
    "display_geometries",
    "key_figures",
    "review_map",
    "rule_titles",
    "summarize",
    "write_review_map",
]

log = logging.getLogger(__name__)

#: Severity colours (low → critical).
SEVERITY_COLOURS: dict[str, str] = {"low": "#4c9f70", "medium": "#e0a800", "high": "#e8590c",
                                    "critical": "#c92a2a"}

#: Colour of the outline around the alert whose popup is open.
SELECTED_COLOUR = "#212529"

#: Every label of the page, per language. ``role``: evidence roles and the stored
#: layers drawn as evidence; ``subject``: subject types; ``key``: evidence keys (the
#: Chinese page shows these instead of the raw keys; the English one shows the keys
#: as stored, and uses the English ``key`` labels in tooltips only).
LABELS: dict[str, dict[str, dict[str, str]]] = {
    "en": {
        "ui": {"alerts": "alerts", "summary": "Summary", "legend": "Legend",
               "by_rule": "By rule", "by_unit": "By unit", "rule": "Rule", "unit": "Unit",
               "count": "Alerts", "amount": "Amount at risk", "not_drawn": "not drawn",
               "drawn": "on the map", "total": "Total", "others": "other units",
               "undrawn_note": "{n} alert(s) without geometry are counted here but not drawn.",
               "range_note": "{n} alert(s) have coordinates outside the longitude/latitude "
                             "range (not EPSG:4326?): counted here, not drawn.",
               "left_out_note": "To keep this page under {mb} MB, the evidence geometry of "
                                "{n} alert(s) (lowest severity and score) is not drawn; "
                                "their popups still list every measured value. Filter the "
                                "map (rule, severity, unit, period) to draw it.",
               "chips_out_note": "Image chips of {n} alert(s) left out to keep this page "
                                 "under {mb} MB.",
               "no_alerts": "No alerts.", "measured": "Measured", "thresholds": "Thresholds",
               "threshold": "threshold", "evidence": "Evidence", "more": "more",
               "cluster": "cluster (number of alerts)", "closed": "dismissed / rectified",
               "point_alert": "alert (point, or station of a fuel alert)",
               "shape": "alert area", "selected": "selected alert",
               "evidence_layer": "Evidence",
               "zoom_in": "{n} evidence features in view: zoom in to draw them",
               "chips_before": "Image chips: before",
               "chips_after": "Image chips: after", "no_unit": "(no unit)",
               "here": "{n} alerts here", "yes": "yes", "no": "no",
               "zoom_to": "Zoom to this alert's evidence", "colon": ": ",
               "shape_drawn": "(a shape, drawn on the map)",
               "stacked": "+ {n} more alert(s) here: click to list them",
               "generated": "Generated by geosup; offline page, no network requests."},
        "field": {"rule": "Rule", "domain": "Domain", "subject": "Subject", "unit": "Unit",
                  "observed_at": "Observed", "period": "Period",
                  "amount_at_risk": "Amount at risk", "score": "Score", "status": "Status",
                  "status_note": "Review note", "alert_id": "Alert id", "title": "Title"},
        "severity": {"low": "low", "medium": "medium", "high": "high", "critical": "critical"},
        "status": {"open": "open", "investigating": "investigating", "confirmed": "confirmed",
                   "dismissed": "dismissed", "rectified": "rectified"},
        "domain": {"fuel": "Fuel", "farmland": "Farmland", "requisition": "Requisition"},
        "role": {"station": "station", "track": "track segment", "nearest": "nearest approach",
                 "approach": "nearest approach → station", "declared": "declared parcel",
                 "reference": "reference parcel", "overlap": "overlap",
                 "outside": "part outside the reference", "inside": "part inside the reference",
                 "previous": "previous year's declaration", "claim": "claim",
                 "project": "project area", "land_use": "land use", "road": "road",
                 "point": "point", "line": "line", "area": "area", "before": "before",
                 "after": "after"},
        "subject": {},
        "key": {"nearest_m": "nearest approach", "stop_m": "longest stop at",
                "radius_m": "radius", "min_dwell_min": "min. dwell", "n_fixes": "GPS fixes",
                "max_gap_min": "max. gap", "window_min": "window", "litres": "litres",
                "tank_l": "tank", "tolerance": "tolerance", "allowed_l": "allowed",
                "factor": "factor", "local_time": "local time", "work_start": "work starts",
                "work_end": "work ends", "interval_min": "interval",
                "interval_h": "interval", "product": "product", "fuel_type": "fuel type",
                "status": "status", "gps_km": "GPS distance",
                "min_distance_km": "min. distance", "delta_km": "odometer change",
                "abs_tolerance_km": "tolerance", "rel_tolerance": "rel. tolerance",
                "excess_area": "excess", "excess_share": "excess share",
                "tolerance_area": "tolerance", "outside_area": "outside",
                "outside_share": "outside share", "share": "share", "min_m2": "min. area",
                "overlap_area": "overlap", "share_a": "share of A", "share_b": "share of B",
                "min_overlap_m2": "min. overlap", "nonfarm_area": "non-farm land",
                "nonfarm_share": "non-farm share", "days_before_year": "days before the year",
                "min_days": "min. days", "official_unit": "official at",
                "declared_area": "declared", "robust_z": "robust z", "z": "z",
                "n_applicants": "applicants", "n_declarations": "declarations",
                "n_parcels": "parcels", "max_applicants": "max. applicants",
                "max_declarations": "max. declarations", "max_parcels": "max. parcels",
                "area_change": "area change", "geometry_change": "drawing change",
                "change_share": "changed share", "min_changed_share": "min. changed share",
                "claimed_area_m2": "claimed", "seen_builtup_m2": "built-up seen",
                "max_ratio": "max. ratio", "min_excess_m2": "min. excess", "days": "days",
                "veg_gain_share": "vegetation gain", "min_gain_share": "min. gain",
                "distance_m": "distance", "max_distance_m": "max. distance"},
        "unit": {"days": "days", "mu": "mu", "min": "min", "h": "h", "s": "s"},
    },
    "zh": {
        "ui": {"alerts": "条预警", "summary": "汇总", "legend": "图例", "by_rule": "按规则",
               "by_unit": "按单位", "rule": "规则", "unit": "单位", "count": "预警数",
               "amount": "涉及金额", "not_drawn": "未上图", "drawn": "已上图", "total": "合计",
               "others": "其他单位", "undrawn_note": "{n} 条预警没有几何，只计数，不上图。",
               "range_note": "{n} 条预警的坐标超出经纬度范围（不是 EPSG:4326？），只计数，不上图。",
               "left_out_note": "为使本页面小于 {mb} MB，{n} 条预警（严重程度和评分最低）的证据图形"
                                "未绘制；其弹窗仍列出全部测量值。按规则、严重程度、单位或期间筛选后"
                                "可绘制。",
               "chips_out_note": "为使本页面小于 {mb} MB，{n} 条预警的影像切片未收入。",
               "no_alerts": "没有预警。", "measured": "测量值", "thresholds": "阈值",
               "threshold": "阈值", "evidence": "证据", "more": "项未显示",
               "cluster": "聚合（预警数）", "closed": "已排除 / 已整改",
               "point_alert": "预警（点，或加油预警的加油站）", "shape": "预警范围",
               "selected": "当前预警", "evidence_layer": "证据",
               "zoom_in": "视野内有 {n} 个证据要素：放大后绘制",
               "chips_before": "影像切片：之前", "chips_after": "影像切片：之后",
               "no_unit": "（无单位）", "here": "此处 {n} 条预警", "yes": "是", "no": "否",
               "zoom_to": "缩放至本预警的证据", "colon": "：",
               "shape_drawn": "（图形，已绘于地图）",
               "stacked": "此处另有 {n} 条预警：点击列出",
               "generated": "由 geosup 生成；离线页面，不发出网络请求。"},
        "field": {"rule": "规则", "domain": "领域", "subject": "对象", "unit": "单位",
                  "observed_at": "发生时间", "period": "期间", "amount_at_risk": "涉及金额",
                  "score": "评分", "status": "状态", "status_note": "核查备注",
                  "alert_id": "预警编号", "title": "原文标题"},
        "severity": {"low": "低", "medium": "中", "high": "高", "critical": "严重"},
        "status": {"open": "待核查", "investigating": "核查中", "confirmed": "已确认",
                   "dismissed": "已排除", "rectified": "已整改"},
        "domain": {"fuel": "公务用车加油", "farmland": "耕地补贴", "requisition": "征地补偿"},
        "role": {"station": "加油站", "track": "轨迹段", "nearest": "最近点",
                 "approach": "最近点至加油站连线", "declared": "申报地块",
                 "reference": "参考地块", "overlap": "重叠部分", "outside": "超出参考地块部分",
                 "inside": "参考地块内部分", "previous": "上年申报地块", "claim": "补偿申报范围",
                 "project": "征收项目范围", "land_use": "土地利用", "road": "道路",
                 "point": "点", "line": "线", "area": "面", "before": "之前", "after": "之后",
                 "persons": "人员", "images": "影像", "repairs": "维修记录",
                 "fixes": "定位点", "stops": "停留点", "transactions": "加油交易",
                 "vehicles": "车辆"},
        "subject": {"card": "加油卡", "vehicle": "车辆", "transaction": "加油交易",
                    "applicant": "申报人", "declaration": "申报", "parcel": "地块",
                    "claim": "补偿申报", "claimant": "补偿申报人", "project": "征收项目",
                    "village": "村", "unit": "单位", "person": "人员", "station": "加油站"},
        "key": {
            # fuel
            "card_id": "加油卡号", "card_ids": "加油卡号", "vehicle_id": "车辆编号",
            "station_id": "加油站编号", "tx_id": "交易编号", "tx_ids": "交易编号",
            "time": "时间", "local_time": "当地时间", "tz": "时区", "litres": "加油量 (L)",
            "tank_l": "油箱容量 (L)", "limit_l": "上限 (L)", "excess_l": "超出量 (L)",
            "allowed_l": "允许加油量 (L)", "expected_l": "应耗油量 (L)",
            "previous_litres": "上次加油量 (L)", "rated_l_per_100km": "额定油耗 (L/100 km)",
            "gps_km": "GPS 里程 (km)", "gap_km": "缺失里程 (km)", "delta_km": "里程变化 (km)",
            "odometer_km": "里程表读数 (km)", "previous_odometer_km": "上次里程表读数 (km)",
            "fix_distance_m": "最近定位点距离 (m)", "nearest_m": "最近距离 (m)",
            "nearest_at": "最近点时间", "nearest_fix_id": "最近定位点编号",
            "nearest_lon": "最近点经度", "nearest_lat": "最近点纬度", "n_fixes": "定位点数",
            "stop_id": "停留编号", "stop_m": "停留点距离 (m)", "stop_start": "停留开始",
            "stop_end": "停留结束", "stop_duration_s": "停留时长 (秒)",
            "previous_time": "上次加油时间", "previous_tx_id": "上次交易编号",
            "interval_min": "间隔 (分钟)", "same": "相同对象", "product": "商品",
            "product_class": "商品类别", "fuel_type": "车辆燃料类型",
            "fuel_type_class": "燃料类别", "non_fuel": "非燃油商品", "kind": "类型",
            "reason": "原因", "reasons": "原因", "status": "状态", "active_from": "启用日期",
            "active_to": "停用日期", "calendar_country": "节假日历", "in_gap": "处于定位缺失期",
            "gap_start": "缺失开始", "gap_end": "缺失结束", "fills": "加油次数",
            "window_start": "窗口开始", "window_end": "窗口结束", "distance_m": "距离 (m)",
            "station_ids": "加油站编号", "station_lon": "加油站经度", "station_lat": "加油站纬度",
            # farmland
            "applicant_id": "申报人编号", "applicant_ids": "申报人编号",
            "declaration_id": "申报编号", "declaration_ids": "申报编号",
            "declarations_over": "超报申报", "parcel_id": "地块编号", "parcel_ids": "地块编号",
            "area_unit": "面积单位", "declared_area": "申报面积", "declared_m2": "申报面积 (m²)",
            "declared_a_area": "申报 A 面积", "declared_a_m2": "申报 A 面积 (m²)",
            "declared_b_area": "申报 B 面积", "declared_b_m2": "申报 B 面积 (m²)",
            "determined_area": "核定面积", "determined_m2": "核定面积 (m²)",
            "eligible_area": "可补贴面积", "eligible_m2": "可补贴面积 (m²)",
            "eligible_found_area": "核实可补贴面积", "eligible_found_m2": "核实可补贴面积 (m²)",
            "excess_area": "超出面积", "excess_m2": "超出面积 (m²)", "excess_share": "超出比例",
            "tolerance_area": "容差面积", "tolerance_m2": "容差面积 (m²)",
            "overlap_area": "重叠面积", "overlap_m2": "重叠面积 (m²)",
            "share_a": "占申报 A 比例", "share_b": "占申报 B 比例",
            "outside_area": "超出参考地块面积", "outside_m2": "超出参考地块面积 (m²)",
            "outside_share": "超出比例", "drawn_area": "图斑面积", "drawn_m2": "图斑面积 (m²)",
            "base_area": "计算基数面积", "base_m2": "计算基数面积 (m²)",
            "nonfarm_area": "非农用地面积", "nonfarm_m2": "非农用地面积 (m²)",
            "nonfarm_share": "非农用地占比", "nonfarm_source": "非农用地来源",
            "nonfarm_m2_by_class": "各类非农用地面积 (m²)", "perimeter_m": "周长 (m)",
            "band": "档次", "band_label": "档次说明", "level": "层级",
            "subsidy_amount": "补贴金额", "subsidy_amounts": "补贴金额",
            "person_name": "姓名", "died_on": "死亡日期", "days_before_year": "早于申报年度天数",
            "official_unit": "任职单位", "median_area": "中位数面积",
            "median_m2": "中位数面积 (m²)", "mad_area": "绝对中位差面积",
            "mad_m2": "绝对中位差面积 (m²)", "percentile_area": "分位数面积",
            "percentile_m2": "分位数面积 (m²)", "rank_percent": "排名百分位",
            "robust_z": "稳健 Z 分数", "village_applicants": "本村申报人数", "villages": "村",
            "n_applicants": "申报人数", "n_declarations": "申报次数", "n_parcels": "地块数",
            "years": "年份", "previous_id": "上年申报编号", "previous_area": "上年面积",
            "previous_m2": "上年面积 (m²)", "area_change": "面积变化",
            "geometry_change": "图形变化", "sym_diff_area": "对称差面积",
            "sym_diff_m2": "对称差面积 (m²)", "union_area": "合并面积",
            "union_m2": "合并面积 (m²)", "inside_area": "参考地块内面积",
            "inside_m2": "参考地块内面积 (m²)", "overlap_wkt": "重叠部分图形",
            "inside_wkt": "参考地块内部分图形", "previous_wkt": "上年申报图形",
            "outside_wkt": "超出部分图形", "declared_wkt": "申报图形",
            "reference_wkt": "参考地块图形", "thresholds": "阈值",
            # requisition
            "claim_id": "补偿申报编号", "claimant_id": "补偿申报人编号", "project_id": "项目编号",
            "item": "申报项目", "notice_date": "公告日期", "claim_area_m2": "申报范围面积 (m²)",
            "claimed_area_m2": "申报建筑面积 (m²)", "seen_builtup_m2": "影像所见建筑面积 (m²)",
            "ratio": "比值", "days": "天数", "moved_in_on": "迁入日期",
            "before_date": "前期影像日期", "after_date": "后期影像日期",
            "before_image": "前期影像", "after_image": "后期影像",
            "chip_before": "前期影像切片", "chip_after": "后期影像切片",
            "chip_bounds": "影像切片范围", "builtup_index": "建设用地指数",
            "builtup_mean": "建设用地指数均值", "builtup_share": "建设用地占比",
            "change_mean": "变化幅度均值", "change_q90": "变化幅度 90 分位",
            "change_share": "变化面积占比", "change_threshold": "变化阈值（影像）",
            "veg_gain_mean": "植被增加均值", "veg_gain_q90": "植被增加 90 分位",
            "veg_gain_share": "植被增加面积占比", "veg_gain_threshold": "植被增加阈值（影像）",
            "effective_pixels": "有效像元数", "valid_coverage": "有效覆盖率",
            "method": "方法",
            # thresholds
            "abs_tolerance_km": "绝对容差 (km)", "band_high_share": "高档比例",
            "band_low_m2": "低档面积 (m²)", "band_low_share": "低档比例",
            "band_mid_share": "中档比例", "buffer_m": "缓冲距离 (m)", "cap_m2": "容差上限 (m²)",
            "classes": "非农用地类别", "factor": "倍数", "high_ratio": "高比值",
            "high_share": "高比例", "interval_h": "间隔 (小时)", "items": "申报项目",
            "max_applicants": "最多申报人数", "max_declarations": "最多申报次数",
            "max_delta_km": "最大里程变化 (km)", "max_gap_km": "最大缺失里程 (km)",
            "max_gap_min": "最长定位缺失 (分钟)", "max_ndvi_gain": "最大 NDVI 增加",
            "max_parcels": "最多地块数", "max_ratio": "最大比值",
            "min_builtup_share": "最小建设用地占比", "min_changed_share": "最小变化占比",
            "min_days": "最少天数", "min_distance_km": "最少行驶里程 (km)",
            "min_dwell_min": "最短停留 (分钟)", "min_excess_l": "最少超出量 (L)",
            "min_excess_m2": "最少超出面积 (m²)", "min_gain_share": "最小植被增加占比",
            "min_m2": "最小面积 (m²)", "min_ndvi_gain": "最小 NDVI 增加",
            "min_overlap_m2": "最小重叠面积 (m²)", "min_share": "最小比例",
            "min_village_size": "本村最少申报人数", "ndbi_min": "NDBI 下限",
            "ndvi_max": "NDVI 上限", "percentile": "百分位", "radius_m": "半径 (m)",
            "rel_tolerance": "相对容差", "require_odometer": "需要里程表读数",
            "same_unit_only": "仅限本单位", "share": "比例", "statuses": "停用状态",
            "stop_diameter_m": "停留直径 (m)", "tolerance": "容差", "water_ndvi": "水体 NDVI",
            "window_days": "窗口 (天)", "window_min": "时间窗 (分钟)", "window_years": "窗口 (年)",
            "work_end": "下班时间", "work_start": "上班时间", "z": "Z 分数",
            "max_distance_m": "最大距离 (m)", "tank_tolerance": "油箱容差"},
        "unit": {"days": "天", "mu": "亩", "min": "分钟", "h": "小时", "s": "秒"},
    },
}

#: Evidence roles under another name: stored layers and synonyms → the role drawn.
ROLE_ALIASES: dict[str, str] = {
    "fuel_stations": "station", "stations": "station", "nearest_approach": "nearest",
    "nearest_fix": "nearest", "parcels": "reference", "reference_parcels": "reference",
    "eligible": "reference", "declarations": "declared", "declaration": "declared",
    "drawn": "declared", "previous_year": "previous", "previous_declarations": "previous",
    "previous_declaration": "previous", "track_segment": "track", "segment": "track",
    "route": "track", "claims": "claim", "projects": "project", "fuel_roads": "road",
    "roads": "road",
}

#: How each evidence role is drawn (and shown in the legend): colour, fill, line
#: weight, dashes, fill opacity; points as circles of ``radius`` pixels.
ROLE_STYLES: dict[str, dict[str, Any]] = {
    "station": {"color": "#0b7285", "fill": "#3bc9db", "weight": 2, "fillOpacity": 0.95,
                "radius": 7},
    "nearest": {"color": "#862e9c", "fill": "#ffffff", "weight": 3, "fillOpacity": 1.0,
                "radius": 6},
    "approach": {"color": "#862e9c", "weight": 2, "dash": "6 5"},
    "track": {"color": "#364fc7", "weight": 3, "opacity": 0.9},
    "declared": {"color": "#1c7ed6", "fill": "#1c7ed6", "weight": 2, "dash": "6 4",
                 "fillOpacity": 0.05},
    "reference": {"color": "#8c5a2b", "fill": "#d9b48f", "weight": 2, "fillOpacity": 0.25},
    "overlap": {"color": "#9c36b5", "fill": "#be4bdb", "weight": 2, "fillOpacity": 0.5},
    "outside": {"color": "#c2255c", "fill": "#f06595", "weight": 2, "dash": "3 3",
                "fillOpacity": 0.45},
    "inside": {"color": "#087f5b", "fill": "#20c997", "weight": 1, "fillOpacity": 0.3},
    "previous": {"color": "#495057", "fill": "#adb5bd", "weight": 2, "dash": "2 5",
                 "fillOpacity": 0.1},
    "claim": {"color": "#5f3dc4", "fill": "#7950f2", "weight": 2, "fillOpacity": 0.08},
    "project": {"color": "#343a40", "weight": 2, "dash": "10 6", "fillOpacity": 0.0},
    "land_use": {"color": "#74b816", "fill": "#a9e34b", "weight": 1, "fillOpacity": 0.2},
    "road": {"color": "#868e96", "weight": 2},
    "point": {"color": "#495057", "fill": "#ced4da", "weight": 2, "fillOpacity": 0.9,
              "radius": 5},
    "line": {"color": "#495057", "weight": 2},
    "area": {"color": "#495057", "fill": "#868e96", "weight": 2, "fillOpacity": 0.15},
}
_DEFAULT_STYLE = {"color": "#495057", "fill": "#868e96", "weight": 2, "fillOpacity": 0.15,
                  "radius": 5}

#: The measured numbers and the thresholds a tooltip shows for each rule: paths into
#: the evidence (``thresholds.radius_m``); missing ones are skipped. Rules not listed
#: show their numbers that share a unit with a threshold.
KEY_FIGURES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "fuel.away_from_station": (("nearest_m",), ("thresholds.radius_m",)),
    "fuel.no_stop_at_station": (("nearest_m", "stop_m"),
                                ("thresholds.radius_m", "thresholds.min_dwell_min")),
    "fuel.no_gps_coverage": (("n_fixes",), ("thresholds.max_gap_min", "thresholds.window_min")),
    "fuel.over_tank_capacity": (("litres", "tank_l"), ("thresholds.tolerance",)),
    "fuel.consumption_mismatch": (("litres", "allowed_l"), ("thresholds.factor",)),
    "fuel.off_hours": (("local_time",), ("thresholds.work_start", "thresholds.work_end")),
    "fuel.rapid_refill": (("interval_min",), ("thresholds.interval_h",)),
    "fuel.product_mismatch": (("product", "fuel_type"), ()),
    "fuel.inactive_vehicle": (("status", "gps_km"), ("thresholds.min_distance_km",)),
    "fuel.odometer_anomaly": (("delta_km", "gps_km"),
                              ("thresholds.abs_tolerance_km", "thresholds.rel_tolerance")),
    "farmland.over_declared": (("excess_area", "excess_share"), ("tolerance_area",)),
    "farmland.outside_reference": (("outside_area", "outside_share"),
                                   ("thresholds.share", "thresholds.min_m2")),
    "farmland.double_claim": (("overlap_area", "share_a", "share_b"),
                              ("thresholds.min_overlap_m2", "thresholds.share")),
    "farmland.non_farmland": (("nonfarm_area", "nonfarm_share"),
                              ("thresholds.min_m2", "thresholds.share")),
    "farmland.deceased_applicant": (("days_before_year",), ("thresholds.min_days",)),
    "farmland.official_applicant": (("official_unit",), ()),
    "farmland.big_recipient": (("declared_area", "robust_z"), ("thresholds.z",)),
    "farmland.claim_frequency": (("n_applicants", "n_declarations", "n_parcels"),
                                 ("thresholds.max_applicants", "thresholds.max_declarations",
                                  "thresholds.max_parcels")),
    "farmland.year_change": (("area_change", "geometry_change"),
                             ("thresholds.area_change", "thresholds.geometry_change")),
    "requisition.built_after_notice": (("change_share",), ("thresholds.min_changed_share",)),
    "requisition.claimed_not_seen": (("claimed_area_m2", "seen_builtup_m2"),
                                     ("thresholds.max_ratio", "thresholds.min_excess_m2")),
    "requisition.deceased_claimant": (("days",), ("thresholds.min_days",)),
    "requisition.moved_in_after_notice": (("days",), ("thresholds.min_days",)),
    "requisition.planted_after_notice": (("veg_gain_share",), ("thresholds.min_gain_share",)),
}

_TEXT_COLUMNS = ("alert_id", "rule", "domain", "severity", "subject_type", "subject_id",
                 "unit", "period", "title", "detail", "evidence", "status", "status_by",
                 "status_note")
_CORE_COLUMNS = ("rule", "domain", "severity", "status", "subject_type", "subject_id", "unit",
                 "period", "title")
_LATE_COLUMNS = ("alert_id", "detail", "status_by", "status_note")  # + evidence, times
_TIME_COLUMNS = ("observed_at", "status_at")
_BRACES = str.maketrans({"{": "&#123;", "}": "&#125;"})
_DEFAULT_TITLE = {"en": "geosup review map", "zh": "geosup 核查地图"}
_HTML_LANG = {"en": "en", "zh": "zh-CN"}
#: Evidence features drawn at once by a domain's evidence layer (more: only the view).
_EVIDENCE_DRAW = 5_000


def _labels(lang: str) -> dict[str, dict[str, str]]:
    if lang not in LABELS:
        msg = f"unknown language {lang!r}; use one of: {', '.join(LABELS)}"
        raise ValueError(msg)
    return LABELS[lang]


def _e(value: Any) -> str:
    """HTML-escape for text written into the page by Python (braces too: see module doc)."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    return html.escape(str(value), quote=True).translate(_BRACES)


def _script_json(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``</script>`` possible)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def canonical_role(role: str) -> str:
    """The role an evidence feature is drawn as (``fuel_stations`` → ``station``).

    Examples
    --------
    >>> canonical_role("parcels"), canonical_role("overlap"), canonical_role("my_layer")
    ('reference', 'overlap', 'my_layer')
    """
    key = str(role)
    return ROLE_ALIASES.get(key.lower(), key)


def _role_style(role: str) -> dict[str, Any]:
    return ROLE_STYLES.get(role, _DEFAULT_STYLE)


def rule_titles(codes: Sequence[str], *, lang: str = "en",
                registry: Any = None) -> dict[str, str]:
    """Titles of rule ``codes`` from the rule registry; the code itself when unregistered.

    Examples
    --------
    >>> rule_titles(["no.such_rule"])
    {'no.such_rule': 'no.such_rule'}
    """
    registry = _registry(registry)
    rules = getattr(registry, "rules", {}) if registry is not None else {}
    out = {}
    for code in codes:
        item = rules.get(code)
        title = ""
        if item is not None:
            title = (item.title_zh or item.title) if lang == "zh" else item.title
        out[code] = title or code
    return out


def _registry(registry: Any) -> Any:
    if registry is not None:
        return registry
    try:
        from geosup.rules import load_builtin_rules

        return load_builtin_rules()
    except Exception as err:  # noqa: BLE001 - a broken rule module must not stop the map
        log.warning("rule titles unavailable (%s); showing rule codes", err)
        return None


def _frame(alerts: gpd.GeoDataFrame | pd.DataFrame) -> gpd.GeoDataFrame:
    """A tolerant copy of the alert table: every column present, EPSG:4326."""
    if isinstance(alerts, gpd.GeoDataFrame) and alerts.geometry.name in alerts.columns:
        gdf = alerts
        if gdf.crs is None:
            geoms = gdf.geometry.to_numpy()
            if (~(shapely.is_missing(geoms) | shapely.is_empty(geoms))).any():
                msg = "alert geometry has no coordinate reference system (alerts are EPSG:4326)"
                raise CRSError(msg)
            gdf = gdf.set_crs(4326)
        elif not gdf.crs.equals("EPSG:4326"):
            gdf = gdf.to_crs(4326)
    else:
        gdf = gpd.GeoDataFrame(pd.DataFrame(alerts),
                               geometry=gpd.GeoSeries([None] * len(alerts), crs=4326), crs=4326)
    data: dict[str, Any] = {}
    for name in ALERT_COLUMNS:
        if name == "geometry":
            continue
        data[name] = (gdf[name].to_numpy() if name in gdf.columns
                      else np.full(len(gdf), None, dtype=object))
    out = gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(gdf.geometry.to_numpy(), crs=4326),
                           crs=4326)
    for name in _TEXT_COLUMNS:
        out[name] = out[name].astype("string")
    rule = out["rule"].fillna("")
    out["rule"] = rule
    out["domain"] = out["domain"].fillna(rule.str.split(".").str[0]).replace("", pd.NA) \
        .fillna("other")
    for name in ("score", "amount_at_risk"):
        out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
    for name in _TIME_COLUMNS:
        out[name] = pd.to_datetime(out[name], utc=True, errors="coerce", format="mixed")
    out._geosup_framed = True  # summarize() need not copy it again
    return out


def display_geometries(geoms: Any, *, max_vertices: int = 20_000, grid: float = 1e-6,
                       tolerance_m: float = 0.0) -> np.ndarray:
    """Copies of ``geoms`` fit to draw: coordinates on a ``grid`` (degrees), heavy ones simplified.

    With ``tolerance_m``, lines and polygons lose the vertices that lie closer than
    that many metres to the line through their neighbours (``shapely.simplify``,
    topology preserved; at most 2 % of the geometry's own extent, so that small
    shapes keep theirs): at the zoom levels a review map is read at, they look the
    same and weigh a fraction. A geometry with more than ``max_vertices``
    coordinates is simplified further, with a tolerance chosen from its own extent,
    doubled until it fits. The input is never modified: the store keeps the full
    geometry.

    Examples
    --------
    >>> import numpy as np, shapely
    >>> t = np.linspace(0, 2 * np.pi, 200_000)
    >>> ring = shapely.Polygon(np.c_[5 + 0.1 * np.cos(t), 52 + 0.1 * np.sin(t)])
    >>> out = display_geometries([ring], max_vertices=1000)
    >>> int(shapely.get_num_coordinates(out[0])) <= 1000, int(shapely.get_num_coordinates(ring))
    (True, 200000)
    """
    arr = np.array(geoms, dtype=object) if not isinstance(geoms, np.ndarray) else geoms.copy()
    if not len(arr):
        return arr
    if tolerance_m > 0:
        sel = np.flatnonzero(~np.isin(shapely.get_type_id(arr), (-1, 0, 4))
                             & (shapely.get_num_coordinates(arr) > 4))
        if len(sel):
            b = shapely.bounds(arr[sel])
            extent = np.fmax(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
            tol = np.fmin(tolerance_m / 111_320.0, 0.01 * extent)
            # without topology checks (several times faster): a display copy only
            simple = shapely.simplify(arr[sel], np.nan_to_num(tol), preserve_topology=False)
            ok = ~shapely.is_empty(simple) & (shapely.get_type_id(simple)
                                              == shapely.get_type_id(arr[sel]))
            arr[sel[ok]] = simple[ok]
    count = shapely.get_num_coordinates(arr)
    heavy = np.flatnonzero(count > max_vertices)
    if len(heavy):
        b = shapely.bounds(arr[heavy])
        extent = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
        tol = np.maximum(extent / max(max_vertices / 4, 1), grid)
        todo = np.arange(len(heavy))
        for _ in range(30):
            if not len(todo):
                break
            simple = shapely.simplify(arr[heavy[todo]], tol[todo], preserve_topology=True)
            fits = shapely.get_num_coordinates(simple) <= max_vertices
            arr[heavy[todo[fits]]] = simple[fits]
            tol[todo] *= 2
            todo = todo[~fits]
        if len(todo):  # pragma: no cover - 30 doublings always fit
            arr[heavy[todo]] = shapely.envelope(arr[heavy[todo]])
    rounded = shapely.set_precision(arr, grid, mode="pointwise")
    empty = shapely.is_empty(rounded) & ~shapely.is_empty(arr)
    rounded[empty] = shapely.centroid(arr[empty])
    return rounded


def _geometry_state(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(drawable, out of range): present and not empty, inside the lon/lat range or not."""
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    inside = present.copy()
    if present.any():
        b = shapely.bounds(geoms[present])
        with np.errstate(invalid="ignore"):
            ok = (np.isfinite(b).all(axis=1) & (b[:, 0] >= -180) & (b[:, 2] <= 180)
                  & (b[:, 1] >= -90) & (b[:, 3] <= 90))
        inside[present] = ok
    return inside, present & ~inside


def summarize(alerts: gpd.GeoDataFrame, *, lang: str = "en",
              registry: Any = None) -> dict[str, Any]:
    """Counts and amount at risk per rule and per unit, drawn and undrawn.

    Returns
    -------
    dict
        ``total``, ``drawn``, ``not_drawn`` (no geometry, or out of range),
        ``out_of_range``, ``amount`` (None when no alert has one) and two DataFrames:
        ``rules`` (rule, domain, title, count, drawn, not_drawn, amount) and ``units``
        (unit, count, drawn, not_drawn, amount), both most alerts first.
    """
    frame = alerts if getattr(alerts, "_geosup_framed", False) else _frame(alerts)
    drawn, out_of_range = _geometry_state(np.asarray(frame.geometry.to_numpy(), dtype=object))
    table = pd.DataFrame({"rule": frame["rule"].astype(object),
                          "domain": frame["domain"].astype(object),
                          "unit": frame["unit"].fillna("").astype(object),
                          "amount": frame["amount_at_risk"].to_numpy(),
                          "drawn": drawn})
    by_rule = table.groupby(["domain", "rule"], sort=True).agg(
        count=("rule", "size"), drawn=("drawn", "sum"),
        amount=("amount", lambda s: s.sum(min_count=1))).reset_index()
    by_rule["not_drawn"] = by_rule["count"] - by_rule["drawn"]
    titles = rule_titles(by_rule["rule"].tolist(), lang=lang, registry=registry)
    by_rule["title"] = by_rule["rule"].map(titles)
    by_rule = by_rule.sort_values(["count", "rule"], ascending=[False, True],
                                  kind="stable").reset_index(drop=True)
    by_unit = table.groupby("unit", sort=True).agg(
        count=("unit", "size"), drawn=("drawn", "sum"),
        amount=("amount", lambda s: s.sum(min_count=1))).reset_index()
    by_unit["not_drawn"] = by_unit["count"] - by_unit["drawn"]
    by_unit = by_unit.sort_values(["count", "unit"], ascending=[False, True],
                                  kind="stable").reset_index(drop=True)
    cols_r = ["rule", "domain", "title", "count", "drawn", "not_drawn", "amount"]
    cols_u = ["unit", "count", "drawn", "not_drawn", "amount"]
    amounts = frame["amount_at_risk"].to_numpy()
    has_amount = bool(np.isfinite(amounts).any()) if len(frame) else False
    return {"total": len(frame), "drawn": int(drawn.sum()),
            "not_drawn": int(len(frame) - drawn.sum()),
            "out_of_range": int(out_of_range.sum()),
            "amount": float(np.nansum(amounts)) if has_amount else None,
            "rules": by_rule[cols_r].astype({"count": int, "drawn": int, "not_drawn": int}),
            "units": by_unit[cols_u].astype({"count": int, "drawn": int, "not_drawn": int})}


_PERCENT_KEYS = frozenset({"share", "tolerance", "rel_tolerance", "area_change",
                           "geometry_change", "share_a", "share_b", "valid_coverage"})
_RATIO_KEYS = frozenset({"factor", "ratio", "max_ratio", "high_ratio"})
_UNIT_SUFFIXES = (("_m2", "m²"), ("_km", "km"), ("_m", "m"), ("_l", "L"), ("_min", "min"),
                  ("_h", "h"), ("_s", "s"), ("_days", "days"))
_ID_KEY = re.compile(r"(?:^|_)(?:id|ids|no|code|band|year|years)$")


def _unit_of(key: str, evidence: Mapping[str, Any], lang: str) -> tuple[str, str]:
    """(kind, unit): kind "pct" (a share shown as %), "x" (a factor) or "" (plain)."""
    area = evidence.get("area_unit") if key.endswith("_area") else None
    return _unit_cached(key, area if isinstance(area, str) else None, lang)


@functools.lru_cache(maxsize=4096)
def _unit_cached(key: str, area_unit: str | None, lang: str) -> tuple[str, str]:
    name = key.rsplit(".", 1)[-1]
    words = LABELS[lang]["unit"]
    if name in _PERCENT_KEYS or name.endswith("_share"):
        return "pct", ""
    if name in _RATIO_KEYS:
        return "x", "×"
    if name.endswith("_area") and area_unit:
        return "", words.get(area_unit, area_unit)
    if name == "litres":
        return "", "L"
    if name == "days" or name.startswith("days_"):
        return "", words["days"]
    for suffix, unit in _UNIT_SUFFIXES:
        if name.endswith(suffix):
            return "", words.get(unit, unit)
    return "", ""


def _fmt_number(value: float) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    a = abs(value)
    digits = 0 if a >= 1000 else 1 if a >= 10 else 2 if a >= 0.1 else 4
    text = f"{value:,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _fmt_value(key: str, value: Any, evidence: Mapping[str, Any], lang: str) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return LABELS[lang]["ui"]["yes" if value else "no"]
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return None
        kind, unit = _unit_of(key, evidence, lang)
        if kind == "pct":
            return f"{_fmt_number(value * 100)} %"
        if kind == "x":
            return f"{_fmt_number(value)} ×"
        return f"{_fmt_number(value)} {unit}".rstrip()
    text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


@functools.lru_cache(maxsize=4096)
def _short_label(key: str, lang: str) -> str:
    name = key.rsplit(".", 1)[-1]
    label = LABELS[lang]["key"].get(name, name)
    return re.sub(r"\s*\([^)]*\)$", "", label)


def _get_path(evidence: Mapping[str, Any], path: str) -> Any:
    value: Any = evidence
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _guess_figures(evidence: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Numbers of an unlisted rule: thresholds, and measured numbers in the same unit."""
    thresholds = evidence.get("thresholds") if isinstance(evidence.get("thresholds"),
                                                          Mapping) else {}
    t_keys = [f"thresholds.{k}" for k, v in thresholds.items()
              if isinstance(v, (int, float)) and not isinstance(v, bool)][:2]
    numeric = [k for k, v in evidence.items() if isinstance(v, (int, float))
               and not isinstance(v, bool) and not _ID_KEY.search(k)
               and not k.endswith(("_lon", "_lat"))]
    suffixes = {s for t in t_keys for s, _ in _UNIT_SUFFIXES if t.endswith(s)}
    same = [k for k in numeric if any(k.endswith(s) for s in suffixes)]
    return (same or numeric)[:2], t_keys


def key_figures(rule: str, evidence: Any, *, lang: str = "en") -> str:
    """The measured number(s) of an alert and the threshold(s) that fired, in one line.

    Read from the evidence along :data:`KEY_FIGURES`, for tooltips and popups.

    Examples
    --------
    >>> key_figures("fuel.away_from_station",
    ...             {"nearest_m": 14419.5, "thresholds": {"radius_m": 300.0}})
    'nearest approach 14,420 m (threshold: radius 300 m)'
    >>> key_figures("fuel.away_from_station",
    ...             {"nearest_m": 14419.5, "thresholds": {"radius_m": 300.0}}, lang="zh")
    '最近距离 14,420 m（阈值：半径 300 m）'
    """
    ev = parse_evidence(evidence)
    if not ev:
        return ""
    spec = KEY_FIGURES.get(rule)
    measured, limits = (list(spec[0]), list(spec[1])) if spec else _guess_figures(ev)
    if spec and all(_get_path(ev, p) is None for p in measured):
        measured, limits = _guess_figures(ev)  # an older or other layout of the evidence

    def items(paths: Sequence[str]) -> list[str]:
        out = []
        for path in paths:
            text = _fmt_value(path, _get_path(ev, path), ev, lang)
            if text is not None:
                out.append(f"{_short_label(path, lang)} {text}")
        return out

    shown, fired = items(measured), items(limits)
    if lang == "zh":
        return "，".join(shown) + (f"（阈值：{'，'.join(fired)}）" if fired else "")
    line = ", ".join(shown)
    if fired:
        line += (" " if line else "") + f"(threshold: {', '.join(fired)})"
    return line


def _amount(value: float | None, lang: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    return f"{value:,.2f}"


def _summary_html(summary: dict[str, Any], *, title: str, lang: str, dom_id: str,
                  currency: str | None = None, left_out: int = 0, chips_out: int = 0,
                  budget_mb: float = 30.0, max_units: int = 25) -> str:
    lab = _labels(lang)
    ui, dom = lab["ui"], lab["domain"]
    amount_label = ui["amount"] + (f" ({currency})" if currency else "")
    parts = [f'<div id="{dom_id}" class="gs-panel gs-summary" style="display:none">',
             f"<details open><summary>{_e(title)}</summary>"]
    total = summary["total"]
    parts.append(f'<p><b>{total:,}</b> {_e(ui["alerts"])} · {_e(amount_label)}: '
                 f'<b data-gs="amount">{_amount(summary["amount"], lang)}</b></p>')
    no_geometry = summary["not_drawn"] - summary.get("out_of_range", 0)
    if no_geometry:
        parts.append(f'<p class="gs-note" data-gs="not-drawn">'
                     f"{_e(ui['undrawn_note'].format(n=format(no_geometry, ',')))}</p>")
    if summary.get("out_of_range"):
        parts.append(f'<p class="gs-note" data-gs="out-of-range">'
                     f"{_e(ui['range_note'].format(n=format(summary['out_of_range'], ',')))}"
                     "</p>")
    mb = f"{budget_mb:g}"
    if left_out:
        parts.append(f'<p class="gs-note gs-warn" data-gs="left-out">'
                     f"{_e(ui['left_out_note'].format(n=format(left_out, ','), mb=mb))}</p>")
    if chips_out:
        parts.append(f'<p class="gs-note gs-warn" data-gs="chips-out">'
                     f"{_e(ui['chips_out_note'].format(n=format(chips_out, ','), mb=mb))}</p>")
    if not total:
        parts.append(f"<p>{_e(ui['no_alerts'])}</p>")
    else:
        parts.append(f"<div><b>{_e(ui['by_rule'])}</b></div><table data-gs=\"by-rule\"><tr>"
                     f"<th>{_e(ui['rule'])}</th><th class=num>{_e(ui['count'])}</th>"
                     f"<th class=num>{_e(ui['not_drawn'])}</th>"
                     f"<th class=num>{_e(amount_label)}</th></tr>")
        for r in summary["rules"].itertuples():
            code = "" if r.title == r.rule else f" <span class=gs-note>{_e(r.rule)}</span>"
            parts.append(f"<tr><td>{_e(dom.get(r.domain, r.domain))} · {_e(r.title)}{code}"
                         f"</td><td class=num>{r.count:,}</td><td class=num>{r.not_drawn:,}</td>"
                         f"<td class=num>{_amount(r.amount, lang)}</td></tr>")
        parts.append("</table>")
        units = summary["units"]
        parts.append(f"<div><b>{_e(ui['by_unit'])}</b></div><table data-gs=\"by-unit\"><tr>"
                     f"<th>{_e(ui['unit'])}</th><th class=num>{_e(ui['count'])}</th>"
                     f"<th class=num>{_e(ui['not_drawn'])}</th>"
                     f"<th class=num>{_e(amount_label)}</th></tr>")
        for r in units.head(max_units).itertuples():
            name = r.unit if r.unit else ui["no_unit"]
            parts.append(f"<tr><td>{_e(name)}</td><td class=num>{r.count:,}</td>"
                         f"<td class=num>{r.not_drawn:,}</td>"
                         f"<td class=num>{_amount(r.amount, lang)}</td></tr>")
        if len(units) > max_units:
            rest = units.iloc[max_units:]
            amount = rest["amount"].sum(min_count=1)
            parts.append(f"<tr><td>{len(rest):,} {_e(ui['others'])}</td>"
                         f"<td class=num>{int(rest['count'].sum()):,}</td>"
                         f"<td class=num>{int(rest['not_drawn'].sum()):,}</td>"
                         f"<td class=num>{_amount(amount, lang)}</td></tr>")
        parts.append("</table>")
    parts.append(f"<p class=gs-note>{_e(ui['generated'])}</p></details></div>")
    return "".join(parts)


def _rgba(colour: str, alpha: float) -> str:
    c = colour.lstrip("#")
    r, g, b = (int(c[k:k + 2], 16) for k in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha:g})"


def _swatch(kind: str, style: Mapping[str, Any]) -> str:
    """A legend swatch drawn like the map draws ``style``: circle, line or area."""
    colour = style.get("color", "#495057")
    border = "dashed" if style.get("dash") else "solid"
    if kind == "point":
        size = 2 * int(style.get("radius", 6))
        return (f'<span class="gs-sw" data-kind="point" style="width:{size}px;height:{size}px;'
                f'background:{style.get("fill", colour)};border:{style.get("weight", 2)}px '
                f'solid {colour}"></span>')
    if kind == "line":
        return (f'<span class="gs-ln" data-kind="line" style="border-top:'
                f'{max(int(style.get("weight", 2)), 2)}px {border} {colour}"></span>')
    fill = _rgba(style.get("fill", colour), float(style.get("fillOpacity", 0.2)))
    return (f'<span class="gs-sq" data-kind="area" style="border:2px {border} {colour};'
            f'background:{fill}"></span>')


def _legend_html(*, lang: str, dom_id: str, roles: Sequence[tuple[str, str]], chips: bool,
                 points: bool = True, shapes: bool = True) -> str:
    lab = _labels(lang)
    ui = lab["ui"]
    rows = [f'<tr><td><span class="gs-sw" data-kind="severity" '
            f'style="background:{SEVERITY_COLOURS[s]}"></span></td>'
            f"<td>{_e(lab['severity'][s])}</td></tr>" for s in reversed(SEVERITIES)]
    rows.append('<tr><td><span class="gs-sw" style="background:#fff;border:3px solid #e8590c">'
                f"</span></td><td>{_e(ui['closed'])}</td></tr>")
    if points:
        rows.append('<tr><td><span class="gs-sw" style="background:#e8590c"></span></td>'
                    f"<td>{_e(ui['point_alert'])}</td></tr>")
        rows.append('<tr><td><span class="gs-sw gs-sw-cluster"><span>5</span></span></td>'
                    f"<td>{_e(ui['cluster'])}</td></tr>")
    if shapes:
        rows.append(f"<tr><td>{_swatch('area', {'color': '#e8590c', 'fillOpacity': 0.3})}"
                    f"</td><td>{_e(ui['shape'])}</td></tr>")
    rows.append(f"<tr><td>{_swatch('area', {'color': SELECTED_COLOUR, 'fillOpacity': 0})}"
                f"</td><td>{_e(ui['selected'])}</td></tr>")
    for role, kind in roles:
        label = lab["role"].get(role, role)
        rows.append(f'<tr data-role="{_e(role)}"><td>{_swatch(kind, _role_style(role))}</td>'
                    f"<td>{_e(ui['evidence_layer'])}{_e(ui['colon'])}{_e(label)}</td></tr>")
    if chips:
        rows.append(f"<tr><td></td><td>{_e(ui['chips_before'])} / {_e(ui['chips_after'])}"
                    "</td></tr>")
    return (f'<div id="{dom_id}" class="gs-panel gs-legend" style="display:none"><details open>'
            f"<summary>{_e(ui['legend'])}</summary><table>{''.join(rows)}</table>"
            '<div class="gs-evnote" data-gs="evidence-note"></div></details></div>')


def _column(values: pd.Series) -> Any:
    """A text column for the data block.

    ``None`` when every value is missing, ``{"d": uniques, "c": codes}`` (code -1:
    missing) when values repeat, else a list.
    """
    n = len(values)
    present = values.notna()
    if not present.any():
        return None
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if len(uniques) <= max(n // 4, 1):
        return {"d": [str(u) for u in uniques], "c": codes.tolist()}
    return [str(v) if ok else None for v, ok in zip(values.astype(object), present,
                                                    strict=True)]


def _times(values: pd.Series) -> pd.Series:
    text = values.dt.strftime("%Y-%m-%d %H:%M:%S UTC")
    return text.str.replace(" 00:00:00 UTC", "", regex=False).astype("string")


def _numbers(values: pd.Series, digits: int) -> list[float | None]:
    arr = np.round(values.to_numpy(dtype="float64"), digits)
    return [None if not np.isfinite(v) else float(v) for v in arr]


def _parse_all(texts: pd.Series) -> list[Any]:
    """Each alert's evidence: a dict, the raw text when it is not a JSON object, or None."""
    out: list[Any] = []
    loads = json.loads
    for text in texts.astype(object).tolist():
        if text is None or text is pd.NA or text in ("", "{}"):
            out.append(None)
            continue
        try:
            value = loads(text) if isinstance(text, str) else text
        except (TypeError, ValueError):
            out.append(str(text))
            continue
        out.append(value if isinstance(value, dict) else str(text))
    return out


def _without_shapes(ev: dict[str, Any], note: str) -> dict[str, Any]:
    """Evidence for a popup: geometry values (WKT, GeoJSON) replaced by ``note``; they are
    drawn on the map (:mod:`maps.evidence`) and as text would only weigh on the page."""
    out = {}
    for key, value in ev.items():
        if is_geometry_value(value):
            value = note
        elif isinstance(value, dict):
            value = _without_shapes(value, note)
        elif isinstance(value, float) and not math.isfinite(value):
            value = None  # NaN is no JSON
        elif isinstance(value, list) and any(isinstance(v, float) and not math.isfinite(v)
                                             for v in value):
            value = [None if isinstance(v, float) and not math.isfinite(v) else v
                     for v in value]
        out[key] = value
    return out


def _evidence_columns(items: Sequence[Any], note: str,
                      clean: Sequence[bool] | None = None) -> dict[str, Any] | None:
    """The evidence of a block of alerts, column by column (compresses a quarter better
    than one JSON text per alert): alerts with the same keys share a schema ``s``; ``i``
    is each alert's schema (-1: none), ``c`` the values per schema and key, in the
    alerts' order; ``r`` the raw text of evidence that is not a JSON object. ``clean``
    marks the evidence known to hold no geometry and no NaN (nothing to replace)."""
    schemas: dict[tuple[str, ...], int] = {}
    index: list[int] = []
    columns: list[dict[str, list[Any]]] = []
    raw: dict[str, str] = {}
    for j, ev in enumerate(items):
        if isinstance(ev, dict):
            if clean is None or not clean[j]:
                ev = _without_shapes(ev, note)
            keys = tuple(ev)
            s = schemas.get(keys)
            if s is None:
                s = schemas[keys] = len(columns)
                columns.append({k: [] for k in keys})
            for k, v in ev.items():
                columns[s][k].append(v)
            index.append(s)
        else:
            index.append(-1)
            if isinstance(ev, str):
                raw[str(j)] = ev
    if not columns and not raw:
        return None
    return {"k": [list(keys) for keys in schemas], "i": index,
            "c": [[col[k] for k in keys] for keys, col in zip(schemas, columns, strict=True)],
            "r": raw}


def _encode_polygons(geoms: np.ndarray) -> list[list[list[list[int]]]]:
    """Each (multi)polygon as a list of polygons, each a list of coded rings."""
    out: list[list[list[list[int]]]] = [[] for _ in range(len(geoms))]
    if not len(geoms):
        return out
    polys, owner = _flatten_parts(geoms)
    polys, sub = polys[shapely.get_type_id(polys) == 3], owner[shapely.get_type_id(polys) == 3]
    # one winding for shells, the other for holes: the page fills many polygons as one
    # path with the nonzero rule
    polys = shapely.orient_polygons(polys, exterior_cw=False)
    coded = _encode_geometries(polys, np.full(len(polys), 2))
    for o, rings in zip(sub.tolist(), coded, strict=True):
        out[o].append(rings)
    return out


def _flatten_parts(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Simple parts (points, lines, polygons) of ``geoms`` and the position they came from."""
    index = np.arange(len(geoms))
    for _ in range(3):  # collections inside collections
        multi = np.isin(shapely.get_type_id(geoms), (4, 5, 6, 7))
        if not multi.any():
            break
        parts, owner = shapely.get_parts(geoms, return_index=True)
        geoms, index = parts, index[owner]
    keep = ~shapely.is_empty(geoms)
    return geoms[keep], index[keep]


def _representative_points(geoms: np.ndarray) -> np.ndarray:
    """Where a non-polygon alert is clustered: its (first) point part, else a point on it."""
    out = np.empty(len(geoms), dtype=object)
    if not len(geoms):
        return out
    kind = shapely.get_type_id(geoms)
    out[kind == 0] = geoms[kind == 0]
    rest = np.flatnonzero(kind != 0)
    if len(rest):
        parts, owner = _flatten_parts(geoms[rest])
        is_point = shapely.get_type_id(parts) == 0
        first_owner, first = np.unique(owner[is_point], return_index=True)
        out[rest[first_owner]] = parts[np.flatnonzero(is_point)[first]]
        todo = rest[np.setdiff1d(np.arange(len(rest)), first_owner)]
        if len(todo):
            out[todo] = shapely.point_on_surface(geoms[todo])
    return out


def _delta_lists(lines: np.ndarray, *, drop_last: bool = False) -> list[list[int]]:
    """Coordinates of ``lines`` as integer micro-degrees: the first absolute, then steps."""
    coords, idx = shapely.get_coordinates(lines, return_index=True)
    counts = np.bincount(idx, minlength=len(lines))
    if drop_last and len(coords):  # a ring's closing point repeats its first
        ends = np.cumsum(counts) - 1
        mask = np.ones(len(coords), dtype=bool)
        mask[ends[counts > 0]] = False
        coords = coords[mask]
        counts = np.maximum(counts - 1, 0)
    ints = np.round(coords * 1e6).astype(np.int64)
    steps = ints.copy()
    steps[1:] -= ints[:-1]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    first = starts[counts > 0]
    steps[first] = ints[first]
    return [p.ravel().tolist() for p in np.split(steps, np.cumsum(counts)[:-1])]


def _encode_geometries(geoms: np.ndarray, kinds: np.ndarray) -> list[Any]:
    """Compact coordinates: a point ``[x, y]``, a line ``[x, y, dx, dy, …]``, a polygon
    ``[ring, …]`` of such lists without the closing point; x, y in micro-degrees."""
    out: list[Any] = [None] * len(geoms)
    sel = np.flatnonzero(kinds == 0)
    if len(sel):
        xy = np.round(shapely.get_coordinates(geoms[sel]) * 1e6).astype(np.int64).tolist()
        for k, pair in zip(sel.tolist(), xy, strict=True):
            out[k] = pair
    sel = np.flatnonzero(kinds == 1)
    if len(sel):
        for k, coords in zip(sel.tolist(), _delta_lists(geoms[sel]), strict=True):
            out[k] = coords
    sel = np.flatnonzero(kinds == 2)
    if len(sel):
        rings, owner = shapely.get_rings(geoms[sel], return_index=True)
        coded = _delta_lists(rings, drop_last=True)
        for k in sel.tolist():
            out[k] = []
        for o, ring in zip(owner.tolist(), coded, strict=True):
            out[sel[o]].append(ring)
    return out


class _EvidenceParts:
    """Evidence as simple parts (one role, one alert each), ready to encode per block."""

    def __init__(self, frame: gpd.GeoDataFrame, ev: gpd.GeoDataFrame, *,
                 max_vertices: int, tolerance_m: float = 0.0) -> None:
        alert = ev["alert"].to_numpy(dtype=np.int64)
        roles = np.array([canonical_role(r) for r in ev["role"].astype(str)], dtype=object)
        geoms = np.asarray(ev.geometry.to_numpy(), dtype=object)
        if len(geoms):  # the nearest approach joined to its station, when both are known
            is_point = shapely.get_type_id(geoms) == 0
            ends = {}
            for role in ("nearest", "station"):
                sel = np.flatnonzero((roles == role) & is_point)
                first = pd.Series(sel, index=alert[sel])
                ends[role] = first[~first.index.duplicated()]
            both = ends["nearest"].index.intersection(ends["station"].index)
            if len(both):
                a = shapely.get_coordinates(geoms[ends["nearest"].loc[both].to_numpy()])
                b = shapely.get_coordinates(geoms[ends["station"].loc[both].to_numpy()])
                apart = np.any(np.abs(a - b) > 1e-7, axis=1)
                if apart.any():
                    lines = shapely.linestrings(np.stack([a[apart], b[apart]], axis=1))
                    alert = np.concatenate([alert, both.to_numpy()[apart]])
                    roles = np.concatenate([roles, np.full(int(apart.sum()), "approach",
                                                           dtype=object)])
                    geoms = np.concatenate([geoms, lines])
        shown = display_geometries(geoms, max_vertices=max_vertices,
                                   tolerance_m=tolerance_m) if len(geoms) else geoms
        parts, owner = _flatten_parts(shown) if len(shown) else (shown, np.zeros(0, int))
        type_id = shapely.get_type_id(parts) if len(parts) else np.zeros(0, dtype=int)
        self.kind = np.where(type_id == 0, 0, np.where(np.isin(type_id, (1, 2)), 1, 2))
        self.alert = alert[owner]
        self.role = roles[owner]
        self.geom = parts
        # features that are the same to within a metre (a station from the alert, from
        # station_lon/lat and from the stations layer) are drawn once
        self.wkb = shapely.to_wkb(shapely.normalize(shapely.set_precision(
            parts, 1e-5, mode="pointwise"))) if len(parts) else np.zeros(0, dtype=object)
        self.domain = frame["domain"].astype(str).to_numpy()[self.alert] if len(parts) \
            else np.zeros(0, dtype=object)
        self.roles = sorted(set(self.role.tolist()))
        # the kind each role is drawn as (its most common), for the legend
        self.role_kind: dict[str, str] = {}
        for role in self.roles:
            k = np.bincount(self.kind[self.role == role], minlength=3).argmax()
            self.role_kind[role] = ("point", "line", "area")[int(k)]

    def __len__(self) -> int:
        return len(self.geom)

    def blocks(self, keep: np.ndarray, *, chunk: int,
               n: int) -> tuple[dict[int, dict[str, Any]], np.ndarray, int, dict[str, int]]:
        """Per block of ``chunk`` alerts: features shared by several alerts once.

        Returns the blocks, the raw JSON bytes per alert (shared features split), the
        number of features and the features per domain.
        """
        per_alert = np.zeros(n, dtype=np.float64)
        sel = np.flatnonzero(keep[self.alert]) if len(self.alert) else np.zeros(0, int)
        if not len(sel):
            return {}, per_alert, 0, {}
        role_index = {r: k for k, r in enumerate(self.roles)}
        block = self.alert[sel] // chunk
        geo_code = pd.factorize(pd.Series(self.wkb[sel]))[0]
        role_code = np.array([role_index[r] for r in self.role[sel]], dtype=np.int64)
        key = (block * len(self.roles) + role_code) * (int(geo_code.max()) + 1) + geo_code
        order = np.lexsort((self.alert[sel], key))
        key_sorted = key[order]
        starts = np.flatnonzero(np.r_[True, key_sorted[1:] != key_sorted[:-1]])
        first = sel[order[starts]]
        groups = np.split(self.alert[sel][order], starts[1:])
        coords = _encode_geometries(self.geom[first], self.kind[first])
        out: dict[int, dict[str, Any]] = {}
        per_domain: dict[str, int] = {}
        for f, alerts_f, c, f_kind in zip(first.tolist(), groups, coords,
                                          self.kind[first].tolist(), strict=True):
            b = int(self.alert[f] // chunk)
            item = out.setdefault(b, {"a": [], "r": [], "t": [], "c": []})
            ids = sorted(set(alerts_f.tolist()))
            item["a"].append(ids[0] if len(ids) == 1 else ids)
            item["r"].append(role_index[self.role[f]])
            item["t"].append(int(self.kind[f]))
            item["c"].append(c)
            size = 6 * (sum(len(r) for r in c) if f_kind == 2 else len(c)) + 12
            per_alert[ids] += size / len(ids)
            dom = str(self.domain[f])
            per_domain[dom] = per_domain.get(dom, 0) + 1
        return out, per_alert, len(first), per_domain


def _block_tag(name: str, uid: str, text: str, *, compress_over: int) -> str:
    """One data block: plain JSON, or gzip + base64 above ``compress_over`` bytes."""
    raw = text.encode("utf-8")
    if compress_over >= 0 and len(raw) > compress_over:
        blob = base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0))
        return (f'<script type="application/octet-stream" id="gs-{name}-{uid}" '
                f'data-encoding="gzip+base64">{blob.decode("ascii")}</script>')
    return f'<script type="application/json" id="gs-{name}-{uid}">{text}</script>'


class _ReviewData(JSCSSMixin):
    """The data blocks, the panels and the call into review.js (one per map).

    Rendered verbatim (:class:`~maps.offline.RawHTML`), never through Jinja.
    """

    def __init__(self, tags: str, groups: Sequence[folium.FeatureGroup], *,
                 config: dict[str, Any], cluster: bool, online: bool,
                 summary_html: str, legend_html: str) -> None:
        super().__init__()
        self._name = "GeosupReview"
        # Instance lists (folium's class lists stay untouched); make_offline inlines them.
        self.default_js = [("supercluster", CDN["supercluster"])] if cluster else []
        self.default_css = []
        self._online = online
        self._config = config
        self._groups = list(groups)
        self._summary_html = summary_html
        self._legend_html = legend_html
        self._block = tags

    def render(self, **kwargs: Any) -> None:
        figure = self.get_root()
        assert isinstance(figure, Figure)
        for name, url in self.default_js:
            figure.header.add_child(folium.elements.JavascriptLink(url), name=name)
        figure.header.add_child(RawHTML(inline_tag("geosup_review_css")),
                                name="geosup_review_css")
        figure.header.add_child(RawHTML(inline_tag("geosup_review_js")),
                                name="geosup_review_js")
        figure.html.add_child(RawHTML(self._summary_html + self._legend_html + self._block),
                              name=self.get_name())
        groups = ",".join(g.get_name() for g in self._groups)
        call = (f"geosupReview.build({self._parent.get_name()}, "
                f"Object.assign({_script_json(self._config)}, {{groups: [{groups}]}}));")
        figure.script.add_child(RawHTML(call), name=self.get_name())


_PAGE_TEMPLATE = (
    "<!DOCTYPE html>\n"
    '<html lang="{lang}">\n'
    "<head>\n"
    "    {{{{this.header.render(**kwargs)}}}}\n"
    "</head>\n"
    "<body>\n"
    "    {{{{this.html.render(**kwargs)}}}}\n"
    "</body>\n"
    "<script>\n"
    "    {{{{this.script.render(**kwargs)}}}}\n"
    "</script>\n"
    "</html>\n")


class ReviewMap(folium.Map):
    """A folium map that inlines vendored assets when rendered (``offline=True``)."""

    def __init__(self, *args: Any, offline: bool = True, title: str = "", lang: str = "en",
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.offline = offline
        self.title = title
        self.lang = lang
        if not offline:
            use_online_assets(self)

    def render(self, **kwargs: Any) -> None:
        figure = self.get_root()
        if isinstance(figure, Figure):
            # <html lang=…>: the page's language for screen readers, fonts, hyphenation
            figure._template = Template(_PAGE_TEMPLATE.format(
                lang=_HTML_LANG.get(self.lang, "en")))
            figure.header.add_child(RawHTML(f"<title>{_e(self.title)}</title>"),
                                    name="geosup_title")
            figure.header.add_child(RawHTML('<meta charset="utf-8">'), name="geosup_charset")
        if self.offline:
            make_offline(self)
        super().render(**kwargs)


_NO_DECOMPRESS = {
    "en": "This browser cannot unpack the data of this map: it lacks DecompressionStream "
          "(Chrome and Edge 80+, Firefox 113+ and Safari 16.4+ have it). Open the file in a "
          "newer browser, or write a smaller map with filters (the data of a small map is "
          "not compressed).",
    "zh": "此浏览器无法解压本地图的数据：缺少 DecompressionStream（Chrome 和 Edge 80+、"
          "Firefox 113+、Safari 16.4+ 支持）。请用较新的浏览器打开本文件，或筛选后生成较小的"
          "地图（小地图的数据不压缩）。",
}


def _page_overhead(*, online: bool, cluster: bool) -> int:
    """Bytes of a page besides its data blocks: inlined assets, folium's code, panels."""
    names = ["geosup_review_js", "geosup_review_css"]
    if not online:
        names += ["leaflet", "leaflet_css"] + (["supercluster"] if cluster else [])
    return sum(len(inline_tag(name).encode("utf-8")) for name in names) + 60_000


def review_map(
    alerts: gpd.GeoDataFrame,
    *,
    lang: str = "en",
    online: bool = False,
    title: str | None = None,
    evidence_layers: Mapping[str, gpd.GeoDataFrame] | None = None,
    max_vertices: int = 20_000,
    display_tolerance_m: float = 0.5,
    chip_root: str | Path | None = None,
    max_chip_bytes: int = 10_000_000,
    max_evidence_features: int = 500_000,
    max_page_bytes: int = 30_000_000,
    compress_over: int = 2_000_000,
    text_chunk: int = 2_000,
    currency: str | None = None,
    registry: Any = None,
) -> folium.Map:
    """Build the review map of ``alerts``.

    Parameters
    ----------
    alerts : GeoDataFrame
        Alert table (:data:`geosup.alerts.ALERT_COLUMNS`; missing columns are
        tolerated), as :meth:`geosup.store.base.Store.alerts` returns it.
    lang : {"en", "zh"}
        Language of every label, rule title, legend and popup field name. In Chinese
        a popup's heading and a tooltip's title are the rule's Chinese title; the
        alert's stored title (when it says more) and detail sentence are shown as
        stored: they are data written by the check, not labels.
    online : bool, default False
        False: every script and style inlined from ``maps/assets``, no base map,
        no request leaves the machine. True: Leaflet 1.9.4 and supercluster from a
        CDN and an OpenStreetMap base map.
    title : str, optional
        Page and summary title.
    evidence_layers : mapping of name to GeoDataFrame, optional
        Layers (e.g. reference parcels) whose features the evidence refers to by id;
        see :mod:`maps.evidence`.
    max_vertices : int
        Geometries with more coordinates are simplified for display (the alert table
        is not modified).
    display_tolerance_m : float, default 1.0
        Lines and polygons are drawn without the vertices closer than this to the line
        through their neighbours (at most 2 % of the shape's extent); 0 draws every
        vertex. The store keeps the full geometry.
    chip_root : path, optional
        The folder image chips are read from (relative paths start there; a path
        outside it is refused).
    max_chip_bytes : int
        At most this many bytes of image chips (a third more in the page: base64).
    max_evidence_features : int
        At most this many evidence features are read (the most important alerts'
        first).
    max_page_bytes : int
        Budget of the page (default 30 MB). When the evidence and image chips would
        push the page over it, the evidence of the least important alerts (severity,
        then score) and then image chips are left out, with a
        :class:`~maps.evidence.MapWarning` and a note in the summary.
    compress_over : int
        Data blocks larger than this many bytes are gzip-compressed (base64); the
        blocks of details and evidence above an eighth of it.
    text_chunk : int
        Alerts per block of details and evidence (decoded when a popup needs it).
    currency : str, optional
        Currency of ``amount_at_risk`` shown beside amounts (e.g. the ``currency``
        setting, "CNY").
    registry : Registry, optional
        Rule registry for titles (default: the built-in rules).

    Returns
    -------
    folium.Map
        A :class:`ReviewMap`; ``m.save(path)`` or :func:`write_review_map` writes it.
        ``m.geosup_counts`` says what was drawn and what was left out.
    """
    lab = _labels(lang)
    title = title if title is not None else _DEFAULT_TITLE[lang]
    frame = _frame(alerts)
    n = len(frame)
    geoms = np.asarray(frame.geometry.to_numpy(), dtype=object)
    drawn, out_of_range = _geometry_state(geoms)
    polygonal = drawn & is_polygonal(geoms)
    is_point = drawn & ~polygonal
    registry = _registry(registry)
    summary = summarize(frame, lang=lang, registry=registry)
    titles = dict(zip(summary["rules"]["rule"], summary["rules"]["title"], strict=True))

    # Map and bounds.
    m = ReviewMap(tiles="OpenStreetMap" if online else None, offline=not online, title=title,
                  lang=lang, control_scale=True, max_zoom=19)
    m.options["maxZoom"] = 19  # clustering needs it without a tile layer (folium #1395)
    m.options["minZoom"] = 1

    ev = evidence_features(frame, evidence_layers=evidence_layers,
                           max_features=max_evidence_features) if n else \
        gpd.GeoDataFrame({"alert": np.zeros(0, dtype=np.int64), "domain": [], "role": []},
                         geometry=[], crs=4326)
    parts = _EvidenceParts(frame, ev, max_vertices=max_vertices,
                           tolerance_m=display_tolerance_m)
    priority = alert_priority(frame) if n else np.zeros(0, dtype=int)
    chips: list[Chip] = image_chips(frame, root=chip_root, max_bytes=max_chip_bytes,
                                    order=priority) if n else []
    bounds_geoms = np.concatenate([geoms[drawn], parts.geom])
    view = None
    if len(bounds_geoms):
        west, south, east, north = shapely.total_bounds(bounds_geoms)
        if north - south < 1e-4 and east - west < 1e-4:
            south, north, west, east = south - 0.005, north + 0.005, west - 0.005, east + 0.005
        view = [[float(south), float(west)], [float(north), float(east)]]
        m.fit_bounds(view, padding=(24, 24))  # refitted in the page beside the summary panel
    else:
        m.location = [20.0, 0.0]

    # One FeatureGroup per rule, in domain, rule order: a point (cluster) part and a
    # polygon part each.
    groups: list[folium.FeatureGroup] = []
    used: set[str] = set()
    layers: list[dict[str, Any]] = []
    rule_codes = frame["rule"].to_numpy(dtype=object)
    domains = frame["domain"].to_numpy(dtype=object)
    order = summary["rules"].sort_values(["domain", "rule"], kind="stable")
    point_pos = np.flatnonzero(is_point)
    point_xy = np.round(shapely.get_coordinates(_representative_points(geoms[point_pos])), 6) \
        if len(point_pos) else np.zeros((0, 2))
    shape_pos = np.flatnonzero(polygonal)
    shape_geo = display_geometries(geoms[shape_pos], max_vertices=max_vertices,
                                   tolerance_m=display_tolerance_m)
    point_rule = rule_codes[point_pos]
    shape_rule = rule_codes[shape_pos]
    for r in order.itertuples():
        if r.drawn == 0:
            continue
        name = (f"{_e(lab['domain'].get(r.domain, r.domain))} · {_e(r.title)} "
                f"<span class=gs-note>({r.drawn:,})</span>")
        if name in used:  # two rules with one title: the layer control keys on the name
            name += f" <span class=gs-note>{_e(r.rule)}</span>"
        used.add(name)
        group = folium.FeatureGroup(name=name, show=True)
        group.add_to(m)
        groups.append(group)
        k = len(groups) - 1
        sel = np.flatnonzero(point_rule == r.rule)
        if len(sel):
            layers.append({"g": k, "kind": "points", "i": point_pos[sel].tolist(),
                           "xy": point_xy[sel].ravel().tolist()})
        sel = np.flatnonzero(shape_rule == r.rule)
        if len(sel):
            layers.append({"g": k, "kind": "shapes", "i": shape_pos[sel].tolist(),
                           "c": _encode_polygons(shape_geo[sel])})

    # The columns tooltips and popups read: "core" is decoded before the layers are
    # built; details, evidence and the review trail only when a popup needs them.
    core: dict[str, Any] = {}
    for name in _CORE_COLUMNS:
        core[name] = _column(frame[name].astype(object) if name == "domain" else frame[name])
    core["score"] = _numbers(frame["score"], 3)
    core["amount_at_risk"] = _numbers(frame["amount_at_risk"], 2)
    parsed = _parse_all(frame["evidence"])
    clean = ~frame["evidence"].str.contains(
        r"(?i)(?:POINT|LINESTRING|POLYGON|GEOMETRYCOLLECTION|coordinates|NaN|Infinity)",
        regex=True).fillna(False).to_numpy(dtype=bool)
    core["key"] = _column(pd.Series(
        [key_figures(r, e, lang=lang) or None if isinstance(e, dict) else None
         for r, e in zip(rule_codes, parsed, strict=True)], dtype="string"))
    if lang == "zh":  # the heading is the Chinese rule title; the stored title when it adds
        english = rule_titles(sorted(set(rule_codes.tolist())), registry=registry)
        stored = frame["title"]
        same = stored.isna() | (stored == pd.Series(rule_codes).map(english).astype("string"))
        core["sub"] = _column(stored.mask(same.fillna(True)))
    late = pd.DataFrame({name: frame[name] for name in _LATE_COLUMNS})
    for name in _TIME_COLUMNS:
        late[name] = _times(frame[name])
    note = lab["ui"]["shape_drawn"]
    uid = uuid.uuid4().hex[:12]
    tags: dict[str, str] = {}
    n_chunks = -(-n // text_chunk) if n else 0
    for k in range(n_chunks):
        part = late.iloc[k * text_chunk:(k + 1) * text_chunk]
        cols = {c: _column(part[c]) for c in part.columns}
        cols["evidence"] = _evidence_columns(parsed[k * text_chunk:(k + 1) * text_chunk], note,
                                             clean[k * text_chunk:(k + 1) * text_chunk])
        tags[f"t{k}"] = _block_tag(f"t{k}", uid, _script_json({"cols": cols}),
                                   compress_over=compress_over // 8)
    labels = {k: dict(v) for k, v in lab.items()}
    payload = {"v": 2, "lang": lang, "n": n, "labels": labels, "colours": SEVERITY_COLOURS,
               "rule_titles": titles, "head": "rule" if lang == "zh" else "title",
               "currency": currency or "", "cols": core, "layers": layers, "bounds": view,
               "domains": sorted(set(domains.tolist())) if n else []}
    tags["core"] = _block_tag("core", uid, _script_json(payload), compress_over=compress_over)

    # Evidence and image chips, within the page budget.
    def chip_tag(items: Sequence[Chip]) -> str:
        spec = [[c.alert, c.before, c.after, [list(c.bounds[0]), list(c.bounds[1])]]
                for c in items]
        return _block_tag("chips", uid, _script_json(spec), compress_over=-1)

    def evidence_tags(keep: np.ndarray) -> tuple[dict[str, str], np.ndarray, int,
                                                 dict[str, int]]:
        blocks, per_alert, count, per_domain = parts.blocks(keep, chunk=text_chunk, n=n)
        out = {f"e{b}": _block_tag(f"e{b}", uid, _script_json(item),
                                   compress_over=compress_over // 8)
               for b, item in sorted(blocks.items())}
        return out, per_alert, count, per_domain

    keep = np.ones(n, dtype=bool)
    ev_tags, per_alert, n_features, per_domain = evidence_tags(keep)
    had_evidence = per_alert > 0
    chip_block = chip_tag(chips) if chips else ""
    fixed = _page_overhead(online=online, cluster=bool(len(point_pos))) + sum(
        len(t) for t in tags.values())

    def page_size() -> int:
        return fixed + sum(len(t) for t in ev_tags.values()) + len(chip_block)

    ev_full = sum(len(t) for t in ev_tags.values())
    ratio = ev_full / max(float(per_alert.sum()), 1.0)  # page bytes per raw evidence byte

    def drop_evidence() -> None:  # least important evidence out until the page fits
        nonlocal ev_tags, n_features, per_domain
        for _ in range(6):
            excess = page_size() - max_page_bytes
            if excess <= 0 or not keep[had_evidence].any():
                break
            raw = max(float(per_alert[keep].sum()), 1.0)
            cost = per_alert * (sum(len(t) for t in ev_tags.values()) / raw)
            candidates = priority[::-1]
            candidates = candidates[keep[candidates] & had_evidence[candidates]]
            upto = int(np.searchsorted(np.cumsum(cost[candidates]), excess * 1.02 + 4096)) + 1
            keep[candidates[:upto]] = False
            ev_tags, _, n_features, per_domain = evidence_tags(keep)

    drop_evidence()
    chips_out = 0
    if chips and page_size() > max_page_bytes:  # then image chips, least important first
        rank = np.empty(n, dtype=np.int64)
        rank[priority] = np.arange(n)
        ranked = sorted(chips, key=lambda c: rank[c.alert])
        sizes = np.array([len(c.before or "") + len(c.after or "") + 80 for c in ranked])
        excess = page_size() - max_page_bytes
        tail = np.cumsum(sizes[::-1])  # bytes freed by leaving out the last k chips
        chips_out = min(int(np.searchsorted(tail, excess)) + 1, len(ranked))
        ranked = ranked[:len(ranked) - chips_out]
        chip_block = chip_tag(ranked) if ranked else ""
        chips = sorted(ranked, key=lambda c: c.alert)
        free = max_page_bytes - page_size()
        if free > 0 and not keep[had_evidence].all():  # room again: evidence back in
            back = priority[~keep[priority] & had_evidence[priority]]
            upto = int(np.searchsorted(np.cumsum(per_alert[back] * ratio), free * 0.9))
            if upto:
                keep[back[:upto]] = True
                ev_tags, _, n_features, per_domain = evidence_tags(keep)
                drop_evidence()
    left_out = int((had_evidence & ~keep).sum())
    budget_mb = max_page_bytes / 1e6
    if left_out or chips_out:
        what = []
        if left_out:
            what.append(f"the evidence geometry of {left_out:,} alerts (the lowest severity "
                        "and score; their popups keep every measured value)")
        if chips_out:
            what.append(f"the image chips of {chips_out:,} alerts")
        warnings.warn(f"to keep the page under {budget_mb:g} MB (max_page_bytes), "
                      f"{' and '.join(what)} were left out; filter the alerts (rule, "
                      "severity, unit, period) or raise max_page_bytes to draw them",
                      MapWarning, stacklevel=2)
    if page_size() > max_page_bytes:
        warnings.warn(f"the page will be about {page_size() / 1e6:.1f} MB, over the "
                      f"{budget_mb:g} MB budget even without evidence and image chips: "
                      "filter the alerts (rule, severity, unit, period)", MapWarning,
                      stacklevel=2)

    # Evidence layers (one per domain: the evidence of the rules switched on) and chips.
    evidence_groups: dict[str, int] = {}
    show_evidence = n_features <= _EVIDENCE_DRAW
    for dom in sorted(per_domain):
        name = (f"{_e(lab['ui']['evidence_layer'])} · {_e(lab['domain'].get(dom, dom))} "
                f"<span class=gs-note>({per_domain[dom]:,})</span>")
        group = folium.FeatureGroup(name=name, show=show_evidence)
        group.add_to(m)
        groups.append(group)
        evidence_groups[dom] = len(groups) - 1
    chip_groups = None
    if chips:
        before = folium.FeatureGroup(name=_e(lab["ui"]["chips_before"]), show=True)
        after = folium.FeatureGroup(name=_e(lab["ui"]["chips_after"]), show=False)
        before.add_to(m)
        after.add_to(m)
        groups.extend([before, after])
        chip_groups = [len(groups) - 2, len(groups) - 1]
    folium.LayerControl(collapsed=len(groups) > 14).add_to(m)

    roles = [r for r in parts.roles if any(parts.role[keep[parts.alert]] == r)] \
        if len(parts) else []
    config = {
        "data": f"gs-core-{uid}", "chunk": int(text_chunk),
        "text": [f"gs-t{k}-{uid}" for k in range(n_chunks)],
        "ev": [f"gs-e{k}-{uid}" if f"e{k}" in ev_tags else None for k in range(n_chunks)],
        "chips": {"block": f"gs-chips-{uid}", "g": chip_groups[0], "h": chip_groups[1]}
        if chip_groups else None,
        "evidence": {"roles": parts.roles, "groups": evidence_groups, "count": n_features,
                     "show": show_evidence, "draw_max": _EVIDENCE_DRAW,
                     "styles": {r: _role_style(r) for r in parts.roles}},
        "selected": SELECTED_COLOUR, "summary": f"gs-summary-{uid}",
        "legend": f"gs-legend-{uid}", "msg": {"decompress": _NO_DECOMPRESS[lang]},
    }
    block_html = tags["core"] + "".join(v for k, v in tags.items() if k != "core") \
        + "".join(ev_tags.values()) + chip_block
    data = _ReviewData(
        block_html, groups, config=config, cluster=bool(len(point_pos)), online=online,
        summary_html=_summary_html(summary, title=title, lang=lang,
                                   dom_id=f"gs-summary-{uid}", currency=currency,
                                   left_out=left_out, chips_out=chips_out,
                                   budget_mb=budget_mb),
        legend_html=_legend_html(lang=lang, dom_id=f"gs-legend-{uid}",
                                 roles=[(r, parts.role_kind[r]) for r in roles],
                                 chips=bool(chips), points=bool(len(point_pos)),
                                 shapes=bool(len(shape_pos))))
    data.add_to(m)
    m.geosup_counts = {"alerts": n, "drawn": int(drawn.sum()),
                       "out_of_range": int(out_of_range.sum()),
                       "no_geometry": int(n - drawn.sum() - out_of_range.sum()),
                       "points": len(point_pos), "shapes": len(shape_pos),
                       "evidence": n_features, "evidence_by_domain": dict(per_domain),
                       "evidence_left_out": left_out, "chips": len(chips),
                       "chips_left_out": chips_out, "page_estimate": page_size(),
                       "layers": [g.layer_name for g in groups]}
    return m


def write_review_map(
    alerts: gpd.GeoDataFrame,
    path: str | Path,
    *,
    lang: str = "en",
    online: bool = False,
    overwrite: bool = False,
    **options: Any,
) -> Path:
    """Write the review map of ``alerts`` to ``path`` (one self-contained HTML file).

    Parameters
    ----------
    alerts, lang, online, options
        As for :func:`review_map`.
    overwrite : bool, default False
        Replace an existing file.

    Raises
    ------
    ExportError
        ``path`` exists and ``overwrite`` is False.
    OfflineAssetError
        An offline page would still load something from the network.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        msg = f"{path} already exists; pass overwrite=True (--overwrite) to replace it"
        raise ExportError(msg)
    m = review_map(alerts, lang=lang, online=online, **options)
    page = m.get_root().render()
    if not online:
        check_no_remote(page)
    size = len(page.encode("utf-8"))
    budget = options.get("max_page_bytes", 30_000_000)
    if size > budget and not m.geosup_counts["page_estimate"] > budget:  # estimate was low
        warnings.warn(f"the page is {size / 1e6:.1f} MB, over the {budget / 1e6:g} MB budget: "
                      "filter the alerts (rule, severity, unit, period)", MapWarning,
                      stacklevel=2)
    m.geosup_counts["page_bytes"] = size
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
