"""District overview: per district counts of the one-map's key objects (for the table and choropleth).

Objects are assigned to the district containing their point-on-surface (a black spot: its midpoint);
those in no district (e.g. on a road beyond the city boundary) are counted apart, so the table's
totals are the layers' totals. Counts of layers a role may not see are returned as None rather than
leaked as numbers.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from layers import registry

LEVELS = ("1", "2", "3", "4", "none")
# count key -> (layer, the point placing a feature, a condition, a grouping): fixed SQL, no user text
COUNTS = {
    "parks": ("chemical_parks", "ST_PointOnSurface(x.geom)", "true", "NULL"),
    "installations_by_level": ("hazard_installations", "ST_PointOnSurface(x.geom)", "true",
                               "coalesce(x.level::text, 'none')"),
    "tailings_ponds": ("tailings_ponds", "ST_PointOnSurface(x.geom)", "true", "NULL"),
    "headtop_ponds": ("tailings_ponds", "ST_PointOnSurface(x.geom)", "x.headtop", "NULL"),
    "blackspots": ("blackspots", "ST_LineInterpolatePoint(x.geom, 0.5)", "true", "NULL"),
}


def district_overview(conn: Connection, role: str) -> dict:
    """``districts``: rows of adcode, name, name_en, bbox, population and the counts of :data:`COUNTS`;
    ``outside``: the same counts of the features in no district."""
    visible = {s.id for s in registry.visible_layers(role)}
    counts = {key: _by_district(conn, *spec) for key, spec in COUNTS.items() if spec[0] in visible}

    def row(adcode: str | None) -> dict:
        out = {}
        for key in COUNTS:
            if key not in counts:
                out[key] = None
            elif key == "installations_by_level":
                out[key] = {lv: counts[key].get((adcode, lv), 0) for lv in LEVELS}
            else:
                out[key] = counts[key].get((adcode, None), 0)
        return out

    areas = conn.execute(text(
        "SELECT adcode, name, name_en, population, ST_XMin(Box2D(geom)) x0, ST_YMin(Box2D(geom)) y0, "
        "ST_XMax(Box2D(geom)) x1, ST_YMax(Box2D(geom)) y1 FROM admin_areas ORDER BY adcode")).mappings()
    districts = [{"adcode": a["adcode"], "name": a["name"], "name_en": a["name_en"], "population": a["population"],
                  "bbox": [a["x0"], a["y0"], a["x1"], a["y1"]]} | row(a["adcode"]) for a in areas]
    return {"districts": districts, "outside": row(None)}


def _by_district(conn: Connection, table: str, point: str, where: str, group: str) -> dict[tuple, int]:
    """(adcode or None outside every district, group) -> count; a feature in two overlapping districts
    counts once, in the first by adcode."""
    rows = conn.execute(text(
        f"SELECT d.adcode, {group} AS g, count(*) AS n FROM {table} x LEFT JOIN LATERAL "
        f"(SELECT a.adcode FROM admin_areas a WHERE ST_Contains(a.geom, {point}) ORDER BY a.adcode LIMIT 1) d "
        f"ON true WHERE {where} GROUP BY 1, 2"))
    return {(adcode, g): n for adcode, g, n in rows}
