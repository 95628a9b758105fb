"""The FAISS store's write transaction: every change from the first write to the next save.

Chunk rows are written as they come, inside one SQLite transaction that ``persist()``
commits together with the new vectors file (see ``faiss.py``). Two things can end that
transaction early, and both must stop the store from saving what it holds in memory:

* another process wrote the index since this one opened it (the generation moved on);
* a full disk or an I/O error, on which SQLite rolls the whole transaction back: the
  vectors in memory then hold changes the database no longer has, and saving them would
  commit a vectors file that disagrees with it.

Nothing here locks: the store calls in under its locks.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from sitechat.errors import StoreError

__all__ = ["WriteTransaction"]


class WriteTransaction:
    """Begins the store's write transaction, counts its writes, and notices when it is lost."""

    def __init__(self, conn: sqlite3.Connection, directory: Path) -> None:
        self._conn = conn
        self._directory = directory
        self.writes = 0  # successful writes the next commit will make durable
        self.lost: str | None = None  # why the store refuses to write or save again

    def begin(self, generation: int) -> None:
        """Start the transaction unless it is open; ``generation`` is the one this process
        last saw, and another process's save since then makes writing an error."""
        if self._conn.in_transaction:
            return
        self._conn.execute("BEGIN IMMEDIATE")
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        if row is None or int(row[0]) != generation:
            self._conn.execute("ROLLBACK")
            raise StoreError(
                f"The index at {self._directory} was changed by another process since this one "
                "opened it. Reopen it before writing; let only one process write an index."
            )

    def wrote(self) -> None:
        self.writes += 1

    def committed(self) -> None:
        self.writes = 0

    def check(self) -> None:
        """Raise if an earlier failure lost the pending changes."""
        if self.lost:
            raise StoreError(self.lost)

    @contextlib.contextmanager
    def guarded(self) -> Iterator[None]:
        """Around one write: a failure that rolled back earlier writes marks them lost."""
        try:
            yield
        except BaseException:
            if self.writes and not self._conn.in_transaction:
                self.lost = (
                    f"The index at {self._directory} could not be written, and the changes "
                    "made since its last save were discarded; on disk it is as it was after "
                    "that save. Close it, free space if the disk is full, reopen it and run "
                    "the ingest again (it is incremental)."
                )
            raise
