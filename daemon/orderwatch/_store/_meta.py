"""Meta values: small named facts the poller keeps between cycles (first sync done, arrivals,
the reconciliation cursor, the last successful poll)."""

from __future__ import annotations

from orderwatch._store._base import Database

__all__ = ["Meta"]


class Meta(Database):
    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def set_meta(self, **values: str | float) -> None:
        with self._transaction(durable=False):
            self._executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [(key, str(value)) for key, value in values.items()],
            )

    @property
    def first_sync_done(self) -> bool:
        """True once a first sync has walked the whole list."""
        return self.get_meta("baseline_done") == "1"

    @property
    def arrivals(self) -> int:
        return int(self.get_meta("arrivals") or 0)
