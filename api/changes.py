"""Layer versions and token lookups held in memory, kept current by PostgreSQL LISTEN/NOTIFY.

Every write to a layer bumps its row in ``layer_versions``, and every write to that table announces
``layer version xid`` on the ``riskmap_layers`` channel (xid: the writing transaction, as ``xmin``
reads it; migrations 0007 and 0010); every change to ``users`` announces itself on
``riskmap_users``. One listener thread per process follows both channels, so a warm tile request
needs no database round trip: its cache key comes from these versions, and a route plan finds the
road graph, rules and structures it has in memory by their (version, xid) rows.

Consistency: a notification is delivered when its transaction commits. A reader asks ``settled()``
before trusting the memory: it is false while a notification sits unread on the listener's socket
or is being applied, and then the caller asks the database instead. So a request that starts after
the notification reached this process never sees the old version. While the listener is not
connected (database down, reconnecting) ``live`` is false and callers use the database (and get
its 503). On every (re)connect all versions are read again and the token cache is emptied; after
a loss the engine's pool is replaced too, which is what lets the API run without a pre-ping round
trip per request (a pooled connection that still fails answers 503 once and SQLAlchemy drops the pool).
"""

from __future__ import annotations

import logging
import select
import threading

import anyio
import psycopg
from sqlalchemy.engine import Engine

from layers.db import libpq_url

log = logging.getLogger("riskmap.changes")
CHANNELS = ("riskmap_layers", "riskmap_users")
ROWS_SQL = "SELECT layer, version, xmin::text FROM layer_versions"


class ChangeFeed:
    def __init__(self, engine: Engine, retry_s: float = 1.0):
        self._engine = engine
        self._conninfo = libpq_url(engine.url.render_as_string(hide_password=False))
        self._retry_s = retry_s
        self._lock = threading.Lock()
        self._versions: dict[str, tuple[int, str]] = {}  # layer -> (version, writing xid)
        self._tokens: dict[str, tuple[str, str]] = {}
        self._token_generation = 0  # bumped by every users change: a lookup started before it is not cached
        self._applying = 0
        self._lost = False
        self._connected = threading.Event()
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="riskmap-changes", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self, wait_s: float = 5.0) -> None:
        """Start listening; wait up to ``wait_s`` for the first connection (callers work without it)."""
        self._thread.start()
        self._connected.wait(wait_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def live(self) -> bool:
        return self._fd is not None

    def settled(self) -> bool:
        """True when the memory holds every change announced to this process so far."""
        fd = self._fd
        if fd is None:
            return False
        try:
            unread = select.select([fd], [], [], 0)[0]  # (socket first, then the counter: see module doc)
        except (OSError, ValueError):
            return False
        return not unread and self._applying == 0

    def refresh(self) -> None:
        """Read every version now (after this process committed a write: its own next request must
        see it even if the notification is still on its way)."""
        if not self.live:
            return
        with self._engine.connect() as conn:
            rows = conn.exec_driver_sql(ROWS_SQL).all()
        with self._lock:
            for layer, version, xid in rows:
                self._update(layer, version, xid)

    # ------------------------------------------------------------------ readers

    def versions(self, layers: list[str]) -> tuple[int, ...] | None:
        """Versions of ``layers`` (0 for a layer never written), or None when memory cannot be trusted."""
        if not self.settled():
            return None
        v = self._versions
        return tuple(v[layer][0] if layer in v else 0 for layer in layers)

    def rows(self, layers) -> dict[str, tuple[int, str]] | None:
        """layer -> (version, writing xid) of those of ``layers`` with a row, as ``SELECT version,
        xmin::text`` gives them, or None when memory cannot be trusted."""
        if not self.settled():
            return None
        v = self._versions
        return {layer: v[layer] for layer in layers if layer in v}

    def remembered(self) -> dict[str, int]:
        """Every layer version held in memory, trusted or not (diagnostics and tests)."""
        return {layer: row[0] for layer, row in self._versions.items()}

    def token_generation(self) -> int:
        return self._token_generation

    def principal(self, token_hash: str) -> tuple[str, str] | None:
        """(name, role) of a token seen before, or None (unknown here: ask the database)."""
        return self._tokens.get(token_hash) if self.settled() else None

    def remember(self, token_hash: str, principal: tuple[str, str], generation: int) -> None:
        """Cache a lookup made when the generation was ``generation`` (dropped if users changed since)."""
        with self._lock:
            if self.live and generation == self._token_generation:
                self._tokens[token_hash] = principal

    # ------------------------------------------------------------------ listener thread

    def _apply(self, channel: str, payload: str) -> None:
        if channel == "riskmap_users":
            self._token_generation += 1
            self._tokens = {}
            return
        parts = payload.split(" ")
        if len(parts) == 3 and parts[1].isdigit():  # (anything else is not ours: ignored)
            self._update(parts[0], int(parts[1]), parts[2])

    def _update(self, layer: str, version: int, xid: str) -> None:
        if version >= self._versions.get(layer, (0, ""))[0]:  # versions only grow; notifications come in commit order
            self._versions[layer] = (version, xid)

    def _reset(self, versions: dict[str, tuple[int, str]], fd: int | None) -> None:
        with self._lock:
            self._versions = versions
            self._token_generation += 1
            self._tokens = {}
            self._fd = fd

    def _follow(self, conn: psycopg.Connection) -> None:
        for channel in CHANNELS:
            conn.execute(f"LISTEN {channel}")
        # read after LISTEN: a change committed in between is both read here and announced
        versions = {layer: (version, xid) for layer, version, xid in conn.execute(ROWS_SQL).fetchall()}
        if self._lost:  # back after losing the database: drop pooled connections to the old server
            self._engine.dispose()
            self._lost = False
        pg = conn.pgconn
        self._reset(versions, pg.socket)
        self._connected.set()
        log.info("following layer and user changes (%d layers)", len(versions))
        while not self._stop.is_set():
            if not select.select([pg.socket], [], [], 1.0)[0]:
                continue
            self._applying += 1
            try:
                pg.consume_input()
                if pg.status != psycopg.pq.ConnStatus.OK:
                    raise psycopg.OperationalError("listener connection lost")
                while (n := pg.notifies()) is not None:
                    with self._lock:
                        self._apply(n.relname.decode(), n.extra.decode())
            finally:
                self._applying -= 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    try:
                        self._follow(conn)
                    finally:
                        self._fd = None  # before the socket closes (its number may be reused)
            except Exception as exc:  # noqa: BLE001  (any failure: forget everything, reconnect)
                if self.live:
                    log.warning("change listener lost the database: %s", str(exc).splitlines()[0] if str(exc) else exc)
                self._reset({}, None)
                self._lost = True
                self._stop.wait(self._retry_s)
        self._reset({}, None)


def reads_only(endpoint):
    """Mark a POST endpoint that only computes (route check, plan, siting check): no version refresh
    after it. (Should it write after all, e.g. the default rules on first use, NOTIFY still tells.)"""
    endpoint.reads_only = True
    return endpoint


class RefreshAfterWrites:
    """ASGI middleware: after a request that may have written (not GET/HEAD/OPTIONS, not marked
    ``reads_only``) and before its answer leaves, the feed re-reads the versions, so the caller's
    next tile shows its own edit."""

    SAFE = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app, state):
        self.app, self.state = app, state  # (the feed itself starts with the app's lifespan)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in self.SAFE:
            return await self.app(scope, receive, send)

        async def send_after_refresh(message):
            endpoint = getattr(scope.get("route"), "endpoint", None)
            if message["type"] == "http.response.start" and not getattr(endpoint, "reads_only", False):
                try:
                    await anyio.to_thread.run_sync(self.state.changes.refresh)
                except Exception:  # noqa: BLE001  (database gone: the feed is not live, tiles ask the database)
                    log.warning("could not refresh layer versions after a write")
            await send(message)

        await self.app(scope, receive, send_after_refresh)
