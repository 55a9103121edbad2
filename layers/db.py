"""The only place that creates engines, sessions and runs migrations."""

from __future__ import annotations

import weakref
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from layers.crs import METRIC_EPSG
from layers.embedded import EmbeddedCluster
from layers.errors import ConfigError
from layers.settings import StoreSettings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept ``postgres://`` / ``postgresql://`` URLs and use the psycopg 3 driver."""
    u = make_url(url.replace("postgres://", "postgresql://", 1))
    if u.drivername in ("postgresql", "postgresql+psycopg2"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The same URL for libpq/psycopg itself (no SQLAlchemy driver suffix)."""
    return make_url(normalise_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)


_DB_KEYS: "weakref.WeakKeyDictionary[Engine, str]" = weakref.WeakKeyDictionary()


def db_key(engine: Engine) -> str:
    """The database an engine connects to, as a key for per-database caches (its full URL; kept per
    engine: rendering a URL costs ~8 µs, which the route fast path would pay several times a plan)."""
    key = _DB_KEYS.get(engine)
    if key is None:
        key = _DB_KEYS[engine] = engine.url.render_as_string(hide_password=False)
    return key


def make_engine(url: str, pool_size: int = 10, pre_ping: bool = True) -> Engine:
    # pool_pre_ping: a connection lost while the database was down is replaced on next use, so the
    # server recovers by itself once the database is back. The API turns it off (a round trip per
    # request) and has its change listener replace the pool instead (api/changes.py).
    return create_engine(
        normalise_url(url), pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=pre_ping,
        pool_recycle=1800, connect_args={"connect_timeout": 5},
    )


class NeedsDatabase(Exception):
    """Raised by an offline :class:`LazyConnection` where the code would have asked the database."""


class LazyConnection:
    """Stands for a ``Connection`` of ``engine`` and checks one out of the pool on first use.

    For code that usually finds what it needs in memory and only sometimes asks the database (route
    plans keyed by versions the API already knows): a checkout and its return cost ~0.1 ms even when
    no statement runs. ``engine`` is there without a checkout; anything else opens the connection, or,
    ``offline``, raises :class:`NeedsDatabase` (for code run on the event loop, which must not wait).
    """

    def __init__(self, engine: Engine, offline: bool = False):
        self.engine, self._offline = engine, offline
        self._conn = None

    def __getattr__(self, name: str):
        if self._conn is None:
            if self._offline:
                raise NeedsDatabase(name)
            self._conn = self.engine.connect()
        return getattr(self._conn, name)

    def commit_and_close(self) -> None:
        """Commit what was done, if a connection was opened at all, and return it to the pool."""
        if self._conn is not None:
            try:
                if self._conn.in_transaction():
                    self._conn.commit()
            finally:
                self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def embedded_cluster(settings: StoreSettings) -> EmbeddedCluster:
    return EmbeddedCluster(settings.cluster_dir, settings.embedded_port, settings.pg_os_user)


def resolve_url(settings: StoreSettings) -> tuple[str, EmbeddedCluster | None, bool]:
    """The database URL to use: ``DATABASE_URL`` as is, or the embedded cluster (started if needed).

    Returns (url, cluster or None, whether this call started the cluster).
    """
    if settings.database_url:
        return normalise_url(settings.database_url), None, False
    cluster = embedded_cluster(settings)
    started = cluster.ensure_started()
    return cluster.url(), cluster, started


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "heads") -> None:
    """Bring the schema to ``revision`` (the schema is created only by these migrations), then check that
    the database's metric columns are in :data:`layers.crs.METRIC_EPSG` (:func:`check_metric_crs`)."""
    command.upgrade(alembic_config(url), revision)
    engine = create_engine(normalise_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            check_metric_crs(conn)
    finally:
        engine.dispose()


def check_metric_crs(conn: Connection, epsg: int = METRIC_EPSG) -> None:
    """ConfigError unless the metric columns made by the migrations (``geom_m``) are in ``epsg``: the
    migrations fix the metric CRS a database is made with, and analyses in another one would mix them."""
    srid = conn.execute(text("SELECT srid FROM geometry_columns WHERE f_table_schema = current_schema() "
                             "AND f_table_name = 'receptors' AND f_geometry_column = 'geom_m'")).scalar()
    if srid is not None and srid != epsg:
        raise ConfigError(f"this database was made with RISKMAP_METRIC_EPSG={srid} and the setting is now {epsg}: "
                          f"set RISKMAP_METRIC_EPSG={srid}, or load the data into a new database")
