"""District overview: per district counts of the one-map's key objects (for the table and choropleth).

Objects are assigned to the district containing their point-on-surface. Counts of layers a role may
not see are returned as None rather than leaked as numbers.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from layers import registry


def district_overview(conn: Connection, role: str) -> list[dict]:
    """Rows of adcode, name, name_en, bbox, population, parks, installations_by_level, headtop_ponds, blackspots."""
    visible = {s.id for s in registry.visible_layers(role)}
    rows = conn.execute(text("""
        SELECT a.adcode, a.name, a.name_en, a.population,
               ST_XMin(Box2D(a.geom)) x0, ST_YMin(Box2D(a.geom)) y0, ST_XMax(Box2D(a.geom)) x1, ST_YMax(Box2D(a.geom)) y1,
               (SELECT count(*) FROM chemical_parks p WHERE ST_Contains(a.geom, ST_PointOnSurface(p.geom))) parks,
               (SELECT jsonb_object_agg(coalesce(level::text, 'none'), n) FROM
                  (SELECT h.level, count(*) n FROM hazard_installations h
                   WHERE ST_Contains(a.geom, ST_PointOnSurface(h.geom)) GROUP BY h.level) l) levels,
               (SELECT count(*) FROM tailings_ponds t WHERE t.headtop AND ST_Contains(a.geom, ST_PointOnSurface(t.geom))) headtop,
               (SELECT count(*) FROM tailings_ponds t WHERE ST_Contains(a.geom, ST_PointOnSurface(t.geom))) ponds
        FROM admin_areas a ORDER BY a.adcode""")).mappings().all()
    blackspots = _blackspots_by_district(conn) if "blackspots" in visible else {}
    out = []
    for r in rows:
        levels = r["levels"] or {}
        out.append({
            "adcode": r["adcode"], "name": r["name"], "name_en": r["name_en"], "population": r["population"],
            "bbox": [r["x0"], r["y0"], r["x1"], r["y1"]],
            "parks": r["parks"] if "chemical_parks" in visible else None,
            "installations_by_level": ({k: levels.get(k, 0) for k in ("1", "2", "3", "4", "none")}
                                       if "hazard_installations" in visible else None),
            "tailings_ponds": r["ponds"] if "tailings_ponds" in visible else None,
            "headtop_ponds": r["headtop"] if "tailings_ponds" in visible else None,
            "blackspots": blackspots.get(r["adcode"], 0) if "blackspots" in visible else None,
        })
    return out


def _blackspots_by_district(conn: Connection) -> dict[str, int]:
    rows = conn.execute(text(
        "SELECT a.adcode, count(b.*) FROM admin_areas a JOIN blackspots b "
        "ON ST_Contains(a.geom, ST_LineInterpolatePoint(b.geom, 0.5)) GROUP BY a.adcode")).all()
    return dict(rows)
