"""Static report maps (folium) that open offline: Leaflet is inlined from the vendored copy and no
external URL is referenced. Used by ``riskmap report``."""

from __future__ import annotations

import html
import json
import re
from datetime import datetime, timezone

import folium
from branca.element import MacroElement
from jinja2 import Template
from sqlalchemy import Connection, text

from api.errors import NotFound
from layers import registry
from layers.registry import HAZARD_LEVELS, RISK_GRADES
from layers.topics.emergency import SPILLS, TIMES, ZONES
from layers.settings import LOCAL_TZ, REPO_ROOT

VENDOR = REPO_ROOT / "web" / "static" / "vendor" / "leaflet"


class _MetricScale(MacroElement):
    """Leaflet's scale in metres only, as the main map (folium's ``control_scale`` adds feet and miles too)."""

    _template = Template("{% macro script(this, kwargs) %}"
                         "L.control.scale({imperial: false}).addTo({{ this._parent.get_name() }});{% endmacro %}")


def new_map(bounds: list[float], title: str) -> folium.Map:
    """A folium map with no CDN assets and no basemap (Leaflet inlined when rendered)."""
    m = folium.Map(tiles=None, prefer_canvas=True)
    m.add_child(_MetricScale())
    m.default_js, m.default_css = [], []
    leaflet_css = (VENDOR / "leaflet.css").read_text(encoding="utf-8")
    leaflet_js = (VENDOR / "leaflet.js").read_text(encoding="utf-8")
    m.get_root().header.add_child(folium.Element(
        f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{leaflet_css}</style>"
        f"<script>{leaflet_js}</script>"
        # the map on the left 60 %, the report beside it: nothing of the map (the zones) under the report
        "<style>body{font-family:sans-serif}.folium-map{width:60%!important}"
        ".report{position:absolute;z-index:1000;top:0;right:0;width:40%;height:100%;box-sizing:border-box;"
        "overflow:auto;background:#fff;padding:8px;border-left:1px solid #999;font-size:12px}"
        ".report table{border-collapse:collapse}.report td,.report th{border:1px solid #ccc;padding:2px 4px}"
        ".banner{color:#a00;font-weight:bold}</style>"
    ))
    m.fit_bounds([[bounds[1], bounds[0]], [bounds[3], bounds[2]]])
    return m


def add_geojson(m: folium.Map, geojson: dict | str, name: str, color: str, fill: bool = True) -> None:
    data = json.loads(geojson) if isinstance(geojson, str) else geojson
    folium.GeoJson(data, name=name, style_function=lambda _f, c=color, fl=fill: {
        "color": c, "weight": 2, "fillColor": c, "fillOpacity": 0.25 if fl else 0}).add_to(m)


def labelled(layer: str, rows: list[dict], *fields: str) -> list[dict]:
    """``rows`` with each coded value of ``fields`` shown as the registry labels it ("zh en"), as the map does."""
    spec = registry.get(layer)
    labels = {f: spec.field(f).codes or {} for f in fields}
    return [r | {f: f"{labels[f][r[f]].zh} {labels[f][r[f]].en}" for f in fields if r.get(f) in labels[f]}
            for r in rows]


def add_points(m: folium.Map, rows, color: str, label: str) -> None:
    for r in rows:
        folium.CircleMarker([r["lat"], r["lon"]], radius=5, color=color, fill=True, fill_opacity=0.8,
                            tooltip=f"{label}: {r['name']}").add_to(m)


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(k, '') if r.get(k) is not None else ''))}</td>"
                                     for k, _ in columns) + "</tr>" for r in rows)
    if not rows:  # (an empty table said nothing: none found, not a failure)
        body = f"<tr><td colspan='{len(columns)}'>无 None</td></tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def local_time(t: datetime) -> str:
    """A moment as the duty staff read it: Beijing time, labelled."""
    return t.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M") + " 北京时间 Beijing time (UTC+8)"


def render(m: folium.Map, title: str, panel_html: str, synthetic: bool) -> str:
    now = local_time(datetime.now(timezone.utc))
    banner = ("<p class='banner'>演示数据为合成数据，不代表真实设施 / Demo data is synthetic, not real facilities</p>"
              if synthetic else "")
    m.get_root().html.add_child(folium.Element(
        f"<div class='report'><h3>{html.escape(title)}</h3>{banner}<p>生成时间 Generated: {now}</p>{panel_html}</div>"))
    out = m.get_root().render()
    leftover = re.findall(r"""<(?:script|link|img)\b[^>]*(?:src|href)=["'](?:https?:)?//[^"']+""", out)
    if leftover:  # folium added an asset we did not inline: refuse rather than ship a broken offline file
        raise RuntimeError(f"report references external assets: {leftover[:3]}")
    return out


def _one(conn: Connection, what: tuple[str, str], sql: str, **params) -> dict:
    """The one row of ``sql``, else NotFound "``what`` not found" (``what`` in English and Chinese)."""
    row = conn.execute(text(sql), params).mappings().first()
    if row is None:
        raise NotFound(f"{what[0]} not found", zh=f"未找到{what[1]}")
    return dict(row)


def _points(conn: Connection, table_sql: str, **params) -> list[dict]:
    return [dict(r) for r in conn.execute(text(table_sql), params).mappings()]


RECEPTORS_LISTED = 200  # a report lists the nearest receptors, and counts them all


def _receptors_near(conn: Connection, geom_sql: str, radius_m: float, **params) -> tuple[list[dict], int, str]:
    """The receptors within ``radius_m`` of the geometry ``geom_sql`` (a fixed subquery), nearest first and at
    most :data:`RECEPTORS_LISTED`; how many there are in all; and a heading for their table."""
    rows = _points(conn, f"""
        SELECT r.name, r.kind, r.protection_class, r.people, ST_X(r.geom) lon, ST_Y(r.geom) lat,
               round(ST_Distance(r.geom::geography, g.geom::geography))::int AS distance_m, count(*) OVER () AS total
        FROM receptors r, (SELECT {geom_sql} AS geom) g
        WHERE ST_DWithin(r.geom::geography, g.geom::geography, :radius) ORDER BY distance_m LIMIT {RECEPTORS_LISTED}""",
                   radius=radius_m, **params)
    total = rows[0]["total"] if rows else 0
    heading = f"{int(radius_m)} m 内防护目标 Receptors within {int(radius_m)} m"
    if total > len(rows):
        heading += f"（最近 {len(rows)} 个，共 {total} 个 / nearest {len(rows)} of {total}）"
    return rows, total, heading


def park_report(conn: Connection, park_id: int, radius_m: float = 1000) -> str:
    park = _one(conn, (f"chemical park {park_id}", f"化工园区 {park_id}"),
                "SELECT id, name, park_level, status, risk_grade, synthetic, ST_AsGeoJSON(geom) gj, "
                "ST_XMin(Box2D(geom)) x0, ST_YMin(Box2D(geom)) y0, ST_XMax(Box2D(geom)) x1, ST_YMax(Box2D(geom)) y1 "
                "FROM chemical_parks WHERE id = :id", id=park_id)
    ents = _points(conn, "SELECT e.id, e.name, e.kind, e.risk_grade, ST_AsGeoJSON(e.geom) gj FROM enterprises e "
                         "WHERE e.park_id = :id ORDER BY e.id", id=park_id)
    inst = _points(conn, "SELECT h.id, h.name, h.unit_type, h.level, ST_AsGeoJSON(h.geom) gj FROM hazard_installations h "
                         "JOIN enterprises e ON e.id = h.enterprise_id WHERE e.park_id = :id ORDER BY h.id", id=park_id)
    recs, n_recs, recs_heading = _receptors_near(conn, "(SELECT geom FROM chemical_parks WHERE id = :id)", radius_m,
                                                 id=park_id)
    bounds = [park["x0"] - 0.012, park["y0"] - 0.012, park["x1"] + 0.012, park["y1"] + 0.012]
    title = f"化工园区报告 Chemical park report: {park['name']}"
    m = new_map(bounds, title)
    add_geojson(m, park["gj"], park["name"], RISK_GRADES.get(park["risk_grade"], ("", "", "#8e44ad"))[2])
    for e in ents:
        add_geojson(m, e["gj"], e["name"], "#c0392b")
    for h in inst:
        add_geojson(m, h["gj"], h["name"], HAZARD_LEVELS.get(h["level"], ("", "", "#555"))[2])
    add_points(m, recs, "#2e86c1", "防护目标 Receptor")
    levels = {lv: sum(1 for h in inst if h["level"] == lv) for lv in (1, 2, 3, 4)}
    shown = labelled("chemical_parks", [park], "park_level", "risk_grade")[0]
    summary = [{"k": "园区级别 Level", "v": shown["park_level"]}, {"k": "风险等级 Risk grade", "v": shown["risk_grade"]},
               {"k": "企业数 Enterprises", "v": len(ents)},
               {"k": "重大危险源 Installations (一/二/三/四级)", "v": "/".join(str(levels[i]) for i in (1, 2, 3, 4))},
               {"k": f"{int(radius_m)} m 内防护目标 Receptors within {int(radius_m)} m", "v": n_recs}]
    panel = (table(summary, [("k", "指标 Item"), ("v", "值 Value")]) + "<h4>企业 Enterprises</h4>"
             + table(labelled("enterprises", ents, "kind", "risk_grade"),
                     [("id", "ID"), ("name", "名称 Name"), ("kind", "类型 Type"), ("risk_grade", "风险 Risk")])
             + f"<h4>{recs_heading}</h4>"
             + table(labelled("receptors", recs, "kind"),
                     [("name", "名称 Name"), ("kind", "类型 Kind"), ("distance_m", "距离 Distance (m)")]))
    return render(m, title, panel, park["synthetic"])


def _grading_text(inst: dict, level: tuple | None) -> str:
    """The installation's GB 18218 outcome as the map's grading block says it (a level, S < 1, or why none)."""
    if level:
        return f"{level[0]} {level[1]} (R = {inst['r']:.2f})" if inst["r"] is not None else f"{level[0]} {level[1]}"
    if inst["grading_error"]:
        return f"无法分级 cannot be graded: {inst['grading_error']}"
    if inst["s"] is not None:
        return f"未构成重大危险源 Not a major hazard installation (S = {inst['s']:.2f} < 1)"
    return "未分级 not graded (riskmap analyze hazchem)"


def installation_report(conn: Connection, inst_id: int, radius_m: float = 1000) -> str:
    inst = _one(conn, (f"hazard installation {inst_id}", f"危险源 {inst_id}"),
                "SELECT h.id, h.name, h.unit_type, h.level, h.synthetic, e.name AS enterprise, ST_AsGeoJSON(h.geom) gj, "
                "ST_X(ST_Centroid(h.geom)) cx, ST_Y(ST_Centroid(h.geom)) cy, g.s, g.r, g.alpha, g.exposed_people, "
                "g.error AS grading_error "
                "FROM hazard_installations h LEFT JOIN enterprises e ON e.id = h.enterprise_id "
                "LEFT JOIN installation_gradings g ON g.installation_id = h.id WHERE h.id = :id", id=inst_id)
    chems = _points(conn, "SELECT name, cas, un_number, quantity_t FROM installation_chemicals "
                          "WHERE installation_id = :id ORDER BY id", id=inst_id)
    recs, _, recs_heading = _receptors_near(conn, "(SELECT geom FROM hazard_installations WHERE id = :id)", radius_m,
                                            id=inst_id)
    d = radius_m / 111000 * 1.3
    title = f"重大危险源报告 Major hazard installation report: {inst['name']}"
    m = new_map([inst["cx"] - d, inst["cy"] - d, inst["cx"] + d, inst["cy"] + d], title)
    add_geojson(m, inst["gj"], inst["name"], HAZARD_LEVELS.get(inst["level"], ("", "", "#555"))[2])
    folium.Circle([inst["cy"], inst["cx"]], radius=radius_m, color="#999", fill=False).add_to(m)
    add_points(m, recs, "#2e86c1", "防护目标 Receptor")
    level = HAZARD_LEVELS.get(inst["level"])
    summary = [{"k": "企业 Enterprise", "v": inst["enterprise"]},
               {"k": "单元 Unit", "v": labelled("hazard_installations", [inst], "unit_type")[0]["unit_type"]},
               {"k": "等级 Level (GB 18218)", "v": _grading_text(inst, level)}]
    if inst["s"] is not None:  # (the grading's terms, as the map's grading block gives them)
        summary += [{"k": "S = Σ q/Q", "v": f"{inst['s']:.2f}"},
                    {"k": "暴露人员校正系数 α", "v": f"{inst['alpha']:g}"},
                    {"k": "厂外暴露人数 Exposed people (500 m)", "v": inst["exposed_people"]}]
    panel = (table(summary, [("k", "指标 Item"), ("v", "值 Value")]) + "<h4>危险化学品 Inventory</h4>"
             + table(chems, [("name", "名称 Name"), ("cas", "CAS"), ("un_number", "UN"), ("quantity_t", "设计最大量 q (t)")])
             + f"<h4>{recs_heading}</h4>"
             + table(labelled("receptors", recs, "kind"),
                     [("name", "名称 Name"), ("kind", "类型 Kind"), ("distance_m", "距离 Distance (m)")]))
    return render(m, title, panel, inst["synthetic"])


def district_report(conn: Connection, adcode: str, role: str = "admin") -> str:
    from gis.overview import district_overview

    area = _one(conn, (f"district {adcode} (an adcode such as 530102)", f"行政区 {adcode}（应为区划代码，如 530102）"),
                "SELECT adcode, name, population, synthetic, ST_AsGeoJSON(geom) gj, ST_XMin(Box2D(geom)) x0, "
                "ST_YMin(Box2D(geom)) y0, ST_XMax(Box2D(geom)) x1, ST_YMax(Box2D(geom)) y1 "
                "FROM admin_areas WHERE adcode = :a", a=adcode)
    row = next(r for r in district_overview(conn, role)["districts"] if r["adcode"] == adcode)
    parks = _points(conn, "SELECT p.name, p.risk_grade, ST_AsGeoJSON(p.geom) gj FROM chemical_parks p, admin_areas a "
                          "WHERE a.adcode = :a AND ST_Contains(a.geom, ST_PointOnSurface(p.geom))", a=adcode)
    title = f"区县报告 District report: {area['name']} ({adcode})"
    m = new_map([area["x0"], area["y0"], area["x1"], area["y1"]], title)
    add_geojson(m, area["gj"], area["name"], "#555", fill=False)
    for p in parks:
        add_geojson(m, p["gj"], p["name"], RISK_GRADES.get(p["risk_grade"], ("", "", "#8e44ad"))[2])
    levels = row["installations_by_level"] or {}
    summary = [{"k": "常住人口 Population", "v": area["population"]}, {"k": "化工园区 Parks", "v": row["parks"]},
               {"k": "重大危险源 Installations (一/二/三/四级)", "v": "/".join(str(levels.get(k, 0)) for k in "1234")},
               {"k": "尾矿库 Tailings ponds", "v": row["tailings_ponds"]},
               {"k": "头顶库 Head-top ponds", "v": row["headtop_ponds"]},
               {"k": "事故多发点段 Black spots", "v": row["blackspots"]}]
    synthetic = bool(conn.execute(text("SELECT bool_or(synthetic) FROM chemical_parks")).scalar())
    return render(m, title, table(summary, [("k", "指标 Item"), ("v", "值 Value")]), synthetic)


RESOURCE_LABELS = {k: (c.zh, c.en, c.color) for k, c in
               registry.get("emergency_resources").field("kind").codes.items()}
RECEPTOR_LABELS = {k: (c.zh, c.en) for k, c in registry.get("receptors").field("kind").codes.items()}


def stored_incident(conn: Connection, incident_id: int) -> dict:
    """A kept incident (inputs, results, hand-over notes); 404 if there is none."""
    row = conn.execute(text("SELECT id, created_at, created_by, status, notes, result FROM incidents WHERE id = :i"),
                       {"i": incident_id}).mappings().first()
    if row is None:
        raise NotFound(f"no incident {incident_id}", zh=f"没有事件 {incident_id}")
    return dict(row)


def incident_report(conn: Connection, incident_id: int, contacts: bool = False) -> str:
    """Render a stored incident as an offline folium page (used by the API and ``riskmap report incident``)."""
    row = stored_incident(conn, incident_id)
    r = row["result"]
    inp, chem, erg = r["inputs"], r["chemical"], r["erg"]
    zones = r["zones"]
    xs, ys = [inp["lon"]], [inp["lat"]]
    for z in zones.values():
        for ring in _rings(z["geometry"]):
            xs += [p[0] for p in ring]
            ys += [p[1] for p in ring]
    title = f"危化品事故辅助决策报告 Hazmat incident report #{incident_id}: {chem['name_zh']} {chem['name_en']}"
    m = new_map([min(xs), min(ys), max(xs), max(ys)], title)
    for name in ("protective", "isolation"):
        if name in zones:
            add_geojson(m, zones[name]["geometry"], f"{ZONES[name][0]} {ZONES[name][1]}", ZONES[name][2])
    folium.CircleMarker([inp["lat"], inp["lon"]], radius=7, color="#000", fill=True, fill_color="#e60012",
                        tooltip="泄漏点 Spill").add_to(m)
    res_rows = []
    for kind in RESOURCE_LABELS:  # (the registry's order, fire stations first: a stored answer's keys are jsonb's)
        for rank, i in enumerate(r["resources"].get(kind, ()), 1):
            color = RESOURCE_LABELS.get(kind, ("", "", "#555"))[2]
            folium.CircleMarker([i["lat"], i["lon"]], radius=5, color=color, fill=True, fill_opacity=0.8,
                                tooltip=f"{RESOURCE_LABELS.get(kind, (kind, kind))[0]} {i['name']}").add_to(m)
            res_rows.append({
                "kind": " ".join(RESOURCE_LABELS.get(kind, (kind, kind))[:2]), "rank": rank, "name": i["name"],
                "travel": "" if i["travel_s"] is None else f"{i['travel_s'] / 60:.1f}",
                "straight": f"{i['straight_m'] / 1000:.2f}", "capacity": i.get("capacity"),
                "contact": (f"{i.get('contact_name') or ''} {i.get('contact_phone') or ''}".strip() if contacts else ""),
                "note": i.get("reason") or i.get("warning") or ""})  # (why not usable, or what to mind)
    verified = "已核实 verified" if erg["verified"] else "未核实 UNVERIFIED — 以 ERG 原书为准 check the printed ERG"
    inputs = [
        {"k": "化学品 Chemical", "v": f"{chem['name_zh']} {chem['name_en']} UN{chem['un_number'] or '—'} "
                                    f"(ERG guide {chem['guide']}; 输入 entered: {inp['chemical']})"},
        {"k": "位置 Location (WGS84)", "v": f"{inp['lon']:.6f}, {inp['lat']:.6f}"},
        {"k": "泄漏 Spill", "v": " ".join(SPILLS[inp["spill"]])}, {"k": "昼夜 Time", "v": " ".join(TIMES[inp["time"]])},
        {"k": "风向 Wind from (°)", "v": inp["wind_from_deg"] if inp["wind_from_deg"] is not None else "未给出 not given"},
        {"k": "风速 Wind speed (m/s)", "v": inp["wind_speed_ms"]}, {"k": "容器 Container", "v": inp["container"]},
        {"k": "记录 Recorded", "v": f"{local_time(row['created_at'])} · {row['created_by']} · {row['status']}"},
        {"k": f"{erg['edition']} 依据 Basis", "v": f"{erg['basis']} · {verified}"},
    ]
    zone_rows = []
    for name, z in zones.items():
        rec = "; ".join(f"{RECEPTOR_LABELS.get(k, (k, k))[0]} {len(v)}: " + ", ".join(i["name"] or "?" for i in v)
                        for k, v in z["receptors"].items())
        zone_rows.append({
            "zone": " ".join(ZONES[name][:2]), "dist": f"{z['distance_m']:.0f}", "shape": z["shape"],
            "people": "无人口栅格 no grid" if z["population"] is None else f"{z['population']:.0f}",
            "receptors": rec or "—",
            "domino": ", ".join([f"{h['name']} (L{h['level'] or '-'})" for h in z["hazard_installations"]]
                                + [f"尾矿库 {t['name']}" for t in z["tailings_ponds"]]) or "—"})
    notes = "".join(f"<li>{datetime.fromisoformat(n['at']).astimezone(LOCAL_TZ):%Y-%m-%d %H:%M} "
                    f"{html.escape(n['by'])}: {html.escape(n['text'])}</li>" for n in row["notes"])
    panel = (f"<p class='banner'>{html.escape(r['decision_support'])}</p>"
             + "".join(f"<p class='banner'>{html.escape(w)}</p>" for w in r["warnings"])
             + table(inputs, [("k", "输入 Input"), ("v", "值 Value")])
             + "<h4>区域 Zones</h4>"
             + table(zone_rows, [("zone", "区域 Zone"), ("dist", "距离 Distance (m)"), ("shape", "形状 Shape"),
                                         ("people", "人口 People"), ("receptors", "防护目标 Receptors"),
                                         ("domino", "多米诺 Domino (installations, ponds)")])
             + "<h4>应急资源（按道路行程时间） Resources by road travel time</h4>"
             + table(res_rows, [("kind", "类型 Kind"), ("rank", "#"), ("name", "名称 Name"),
                                        ("travel", "行程 Travel (min)"), ("straight", "直线 Straight (km)"),
                                        ("capacity", "能力 Capacity"), ("contact", "联系 Contact"),
                                        ("note", "说明 Note")])
             + (f"<h4>交接记录 Hand-over notes（北京时间 Beijing time）</h4><ul>{notes}</ul>" if notes else ""))
    return render(m, title, panel, r["synthetic_data"])


def _rings(geometry: dict):
    coords = geometry["coordinates"]
    polys = coords if geometry["type"] == "MultiPolygon" else [coords]
    for poly in polys:
        yield from poly


REPORTS = {"park": park_report, "installation": installation_report, "district": district_report,
           "incident": lambda conn, incident_id: incident_report(conn, incident_id, contacts=True)}
