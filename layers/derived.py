"""Bookkeeping for derived layers: analysis runs, their input versions, and staleness.

An analysis writes its rows with the ``run_id`` from :func:`start_run` inside one transaction and
closes the run with :func:`finish_run`. A run is stale once any of its input layers has been written
since (layer versions are bumped by triggers on every write).
"""

from __future__ import annotations

import json
from typing import Iterable

from sqlalchemy import Connection, text


def layer_versions(conn: Connection, layers: Iterable[str] | None = None) -> dict[str, int]:
    rows = conn.execute(text("SELECT layer, version FROM layer_versions")).all()
    wanted = set(layers) if layers is not None else None
    return {r.layer: r.version for r in rows if wanted is None or r.layer in wanted}


def start_run(conn: Connection, analysis: str, inputs: Iterable[str]) -> int:
    """Open a run of ``analysis`` reading the layers ``inputs``; returns the run id."""
    versions = layer_versions(conn, inputs)
    return conn.execute(
        text("INSERT INTO analysis_runs (analysis, input_versions) VALUES (:a, CAST(:v AS jsonb)) RETURNING id"),
        {"a": analysis, "v": json.dumps(versions)},
    ).scalar_one()


def finish_run(conn: Connection, run_id: int, stats: dict) -> None:
    conn.execute(
        text("UPDATE analysis_runs SET finished_at = now(), status = 'done', stats = CAST(:s AS jsonb) WHERE id = :id"),
        {"s": json.dumps(stats, ensure_ascii=False, default=str), "id": run_id},
    )


def latest_run(conn: Connection, analysis: str) -> dict | None:
    """The last finished run of ``analysis`` with ``stale`` and the input layers changed since."""
    row = conn.execute(
        text("SELECT id, analysis, started_at, finished_at, input_versions, stats FROM analysis_runs "
             "WHERE analysis = :a AND status = 'done' ORDER BY id DESC LIMIT 1"),
        {"a": analysis},
    ).mappings().first()
    if row is None:
        return None
    now = layer_versions(conn, row["input_versions"].keys())
    changed = sorted(k for k, v in row["input_versions"].items() if now.get(k, v) != v)
    return {
        "run_id": row["id"], "analysis": row["analysis"],
        "computed_at": row["finished_at"].isoformat() if row["finished_at"] else None,
        "stale": bool(changed), "changed_inputs": changed, "stats": row["stats"],
    }


def stale_layers(conn: Connection, specs) -> dict[str, dict]:
    """Of the derived layers among ``specs``, those written by a run made stale by edits since:
    layer id -> ``{analysis, computed_at, changed_inputs}`` (the page marks them 待更新 Stale)."""
    runs: dict[int, dict | None] = {}
    out = {}
    for spec in specs:
        if not spec.derived:
            continue
        # (the table name is the registry's, not user text)
        name = conn.execute(text(f"SELECT r.analysis FROM analysis_runs r WHERE r.id = "
                                 f"(SELECT max(run_id) FROM {spec.model.__tablename__})")).scalar()
        if name is None:
            continue
        run = runs.setdefault(name, latest_run(conn, name))
        if run and run["stale"]:
            out[spec.id] = {k: run[k] for k in ("analysis", "computed_at", "changed_inputs")}
    return out
