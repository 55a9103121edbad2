"""A minimal pool of asyncpg connections, for the tile fast path.

asyncpg rather than the stack's psycopg here (measured, docs/onemap.md): a cold tile is one
prepared statement, and asyncpg runs it for ~31 µs of CPU against ~65 µs for psycopg's async
connection (its readiness waits register and unregister the socket with the event loop on every
statement), on a server whose one event-loop thread spends ~200 µs per cold tile in all.
psycopg_pool's ``AsyncConnectionPool`` cost ~0.1 ms per checkout (its locks, statistics and return
handling): as much as the statement of a z14 roads tile. This pool hands out idle connections
last-in first-out under a semaphore, opens one when none is idle (loading PostGIS first, ~10 ms once
per backend), and drops a connection that comes back after an error or inside a transaction. There
is no background task: a connection broken by a database restart fails once, is dropped, and the
next use opens a new one. Statements are prepared once per connection (asyncpg's statement cache).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

import asyncpg

log = logging.getLogger("riskmap.pool")

# what a lost or refused database, or a failing statement, raises through this pool
ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


class AsyncPool:
    def __init__(self, dsn: str, size: int, timeout_s: float = 5.0):
        self._dsn, self.size, self._timeout_s = dsn, size, timeout_s
        self._idle: list[asyncpg.Connection] = []
        self._slots: asyncio.Semaphore | None = None  # made in the event loop that uses it
        self.checkouts = 0

    async def _connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self._dsn, timeout=5)
        await conn.execute("SELECT postgis_lib_version()")  # load PostGIS in the backend now
        return conn

    async def warm(self, n: int) -> None:
        """Open up to ``n`` connections ahead of the first requests (a database that is down is not
        an error here: connections open on first use)."""
        try:
            while len(self._idle) < min(n, self.size):
                self._idle.append(await self._connect())
        except ERRORS as exc:
            log.warning("tile connections not opened ahead: %s", str(exc).splitlines()[0] if str(exc) else exc)

    @asynccontextmanager
    async def connection(self):
        """An idle connection (or a new one); TimeoutError when none is free within the timeout."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        if self._slots.locked():
            try:
                await asyncio.wait_for(self._slots.acquire(), self._timeout_s)
            except TimeoutError:
                raise TimeoutError(f"no tile connection free within {self._timeout_s:.0f} s") from None
        else:
            await self._slots.acquire()
        try:
            self.checkouts += 1
            conn = self._idle.pop() if self._idle else await self._connect()
            ok = False
            try:
                yield conn
                ok = True
            finally:
                if ok and not conn.is_closed() and not conn.is_in_transaction():
                    self._idle.append(conn)
                else:
                    conn.terminate()
        finally:
            self._slots.release()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()
