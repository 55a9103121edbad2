"""The ``riskmap`` command line: serve, database, import/export, users."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from sqlalchemy.engine import Engine

from layers import registry
from layers.db import make_engine, migrate, resolve_url
from layers.embedded import EmbeddedClusterError
from layers.errors import DataError, ImportRejected
from layers.settings import StoreSettings

app = typer.Typer(help="riskmap: 危险化学品安全风险一张图 / hazardous-chemicals safety risk one-map server.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
users_app = typer.Typer(help="API users and their tokens.", no_args_is_help=True)
db_app = typer.Typer(help="The embedded PostgreSQL/PostGIS cluster.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(db_app, name="db")


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def database(store: StoreSettings | None = None) -> Iterator[tuple[str, Engine]]:
    """URL and engine for a CLI command: DATABASE_URL, or the embedded cluster (started for the
    command and stopped after it unless it was already running, e.g. under ``riskmap serve``)."""
    store = store or StoreSettings()
    try:
        url, cluster, started = resolve_url(store)
    except EmbeddedClusterError as exc:
        fail(str(exc))
    engine = make_engine(url, pool_size=2)
    try:
        migrate(url)
        yield url, engine
    finally:
        engine.dispose()
        if started:
            cluster.stop()


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="bind address (default RISKMAP_HOST or 127.0.0.1)"),
    port: Optional[int] = typer.Option(None, help="port (default RISKMAP_PORT or 8000)"),
    demo: bool = typer.Option(True, help="load the Kunming demo data into an empty database"),
) -> None:
    """Run the server (starts the embedded cluster unless DATABASE_URL is set; Ctrl-C stops both)."""
    import uvicorn

    from api.app import create_app
    from api.settings import ApiSettings

    settings = ApiSettings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    store = StoreSettings()
    try:
        url, cluster, started = resolve_url(store)
    except EmbeddedClusterError as exc:
        fail(str(exc))
    try:
        migrate(url)
        if demo:
            from layers.demo import load_demo_if_empty

            engine = make_engine(url, pool_size=2)
            try:
                load_demo_if_empty(engine, store)
            finally:
                engine.dispose()
        where = "embedded cluster " + str(store.cluster_dir) if cluster else "DATABASE_URL"
        typer.echo(f"riskmap: database = {where}; serving http://{host or settings.host}:{port or settings.port}/")
        uvicorn.run(create_app(url, settings, store), host=host or settings.host, port=port or settings.port,
                    log_level=settings.log_level.lower(), access_log=False)
    finally:
        if started:
            typer.echo("riskmap: stopping the embedded cluster")
            cluster.stop()


@app.command("migrate")
def migrate_cmd() -> None:
    """Create or upgrade the schema (Alembic migrations)."""
    with database():
        typer.echo("schema is up to date")


@app.command("import")
def import_cmd(
    layer: str = typer.Argument(..., help="layer id (see `riskmap layers`)"),
    file: Path = typer.Argument(..., help="GeoJSON, GeoPackage, zipped Shapefile or CSV (lon/lat or WKT)"),
    source_crs: Optional[str] = typer.Option(None, "--source-crs", help="EPSG code, GCJ-02 or BD-09"),
    replace: bool = typer.Option(False, help="replace the layer's contents instead of appending"),
    make_valid: bool = typer.Option(False, help="repair invalid geometries (shapely make_valid) instead of rejecting"),
) -> None:
    """Validate a file against the layer registry and load it in one transaction (all or nothing)."""
    from layers.io import import_file

    spec = _spec(layer)
    store = StoreSettings()
    with database(store) as (_, engine):
        try:
            result = import_file(engine, spec, file, source_crs=source_crs, area=store.area_bbox,
                                 replace=replace, progress=sys.stderr.isatty(), make_valid=make_valid)
        except ImportRejected as exc:
            fail(exc.report())
        except DataError as exc:
            fail(str(exc))
    if result.ignored_columns:
        typer.echo(f"ignored columns not in the registry: {', '.join(result.ignored_columns)}")
    typer.echo(f"imported {result.written} features into {layer} (from {result.source_crs})")


@app.command("export")
def export_cmd(
    layer: str = typer.Argument(..., help="layer id"),
    fmt: str = typer.Option("geojson", "--format", help="geojson, gpkg or csv"),
    out: Optional[Path] = typer.Option(None, "--out", help="output file (default LAYER.FORMAT)"),
) -> None:
    """Write a layer to a file."""
    from layers.io import export_layer

    spec = _spec(layer)
    out = out or Path(f"{layer}.{fmt}")
    with database() as (_, engine):
        try:
            n = export_layer(engine, spec, out, fmt)
        except DataError as exc:
            fail(str(exc))
    typer.echo(f"exported {n} features to {out}")


@app.command("analyze")
def analyze_cmd(
    which: str = typer.Argument("all", help="an analysis name (roads, hazchem, tailings) or all"),
) -> None:
    """Recompute derived layers (one transaction per analysis, recorded with a run id)."""
    from gis.analyses import ANALYSES

    names = list(ANALYSES) if which == "all" else [which]
    if which != "all" and which not in ANALYSES:
        fail(f"unknown analysis {which!r}; choose from: all, {', '.join(ANALYSES)}")
    store = StoreSettings()
    with database(store) as (_, engine):
        run_analyses(engine, store, names)


def run_analyses(engine: Engine, store: StoreSettings, names: list[str]) -> None:
    from gis.analyses import resolve
    from gis.errors import AnalysisError

    for name in names:
        typer.echo(f"analysis {name}: running")
        try:
            stats = resolve(name)(engine, store)
        except (AnalysisError, DataError) as exc:
            fail(f"analysis {name}: {exc}")
        typer.echo(f"analysis {name}: done " + ", ".join(f"{k}={v}" for k, v in stats.items()))


@app.command("report")
def report_cmd(
    kind: str = typer.Argument(..., help="park, installation or district"),
    ident: str = typer.Argument(..., help="park id, installation id, or district adcode"),
    out: Path = typer.Option(..., "--out", help="output HTML file (opens offline)"),
) -> None:
    """Render a static folium report map with a summary table (no external assets)."""
    from api.reports import REPORTS

    if kind not in REPORTS:
        fail(f"unknown report {kind!r}; choose from {', '.join(REPORTS)}")
    if kind != "district" and not ident.isdigit():
        fail(f"{kind} id must be a number")
    with database() as (_, engine):
        with engine.connect() as conn:
            try:
                page = REPORTS[kind](conn, ident if kind == "district" else int(ident))
            except DataError as exc:
                fail(str(exc))
    out.write_text(page, encoding="utf-8")
    typer.echo(f"wrote {out}")


@app.command("layers")
def layers_cmd() -> None:
    """List the layers in the registry."""
    for spec in registry.LAYERS:
        access = "public" if spec.public else "restricted: " + ",".join(sorted(spec.roles))
        typer.echo(f"{spec.id:24} {spec.geometry_type:13} {spec.title_zh} / {spec.title_en} ({access})")


def _spec(layer: str):
    try:
        return registry.get(layer)
    except KeyError:
        fail(f"unknown layer {layer!r}; layers: {', '.join(registry.REGISTRY)}")


@users_app.command("add")
def users_add(name: str, role: str = typer.Option(..., help="planner, route_controller, emergency, editor, admin")) -> None:
    """Create a user (or renew its token); the token is printed as the last line."""
    from layers.users import add_user

    with database() as (_, engine):
        try:
            with engine.begin() as conn:
                token = add_user(conn, name, role)
        except DataError as exc:
            fail(str(exc))
    typer.echo(f"user {name} ({role}) ready; keep this token, it is shown only once:")
    typer.echo(token)


@users_app.command("list")
def users_list() -> None:
    """List users and roles."""
    from layers.users import list_users

    with database() as (_, engine):
        with engine.connect() as conn:
            for u in list_users(conn):
                typer.echo(f"{u['name']:20} {u['role']:16} {'active' if u['active'] else 'revoked'}")


@users_app.command("remove")
def users_remove(name: str) -> None:
    """Revoke a user's token."""
    from layers.users import remove_user

    with database() as (_, engine):
        with engine.begin() as conn:
            if not remove_user(conn, name):
                fail(f"no user {name!r}")
    typer.echo(f"revoked {name}")


@db_app.command("start")
def db_start() -> None:
    """Start the embedded cluster (initialising it on first use) and leave it running."""
    from layers.db import embedded_cluster

    cluster = embedded_cluster(StoreSettings())
    try:
        cluster.ensure_started()
        migrate(cluster.url())
    except EmbeddedClusterError as exc:
        fail(str(exc))
    typer.echo(f"embedded cluster running on 127.0.0.1:{cluster.port} ({cluster.root})")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded cluster."""
    from layers.db import embedded_cluster

    embedded_cluster(StoreSettings()).stop()
    typer.echo("embedded cluster stopped")


@db_app.command("status")
def db_status() -> None:
    """Say whether the embedded cluster is running."""
    from layers.db import embedded_cluster

    cluster = embedded_cluster(StoreSettings())
    state = "running" if cluster.is_running() else ("stopped" if cluster.initialized else "not initialised")
    typer.echo(f"embedded cluster {cluster.root}: {state}")
