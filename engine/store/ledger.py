"""What :class:`~sluice.engine.store.history.History` reads of the version ledger, and of one
target across rollouts (the console's detail)."""

from __future__ import annotations

from typing import Any

from sluice.engine.store.backend import Database
from sluice.engine.store.schema import SAMPLE_COLUMNS


class LedgerReads:
    """The ledger half of :class:`~sluice.engine.store.history.History` (a mixin over its ``db``)."""

    db: Database

    def ledger(self, module: str, *, before_rollout: int | None = None) -> dict[str, str]:
        """Each target's version of ``module`` now (or just before rollout ``before_rollout``)."""
        sql = "SELECT target, version FROM ledger WHERE module = ?"
        params: list[Any] = [module]
        if before_rollout is not None:
            sql += " AND rollout_id < ?"
            params.append(before_rollout)
        current: dict[str, str] = {}
        for target, version in self.db.execute(sql + " ORDER BY id", params):
            current[target] = version
        return current

    def ledger_entries(self, module: str | None = None) -> list[dict[str, Any]]:
        if module is None:
            return list(self.db.query("SELECT * FROM ledger ORDER BY id"))
        return list(self.db.query("SELECT * FROM ledger WHERE module = ? ORDER BY id", [module]))

    # ------------------------------------------------------------------ one target (the console's detail)

    def target_ledger(self, target: str) -> list[dict[str, Any]]:
        """Every module's ledger entries for ``target``, oldest first."""
        return list(self.db.query("SELECT * FROM ledger WHERE target = ? ORDER BY id", [target]))

    def target_last_apply(self, target: str) -> dict[str, Any] | None:
        """The newest recorded apply (or rollback) of ``target``, in any rollout."""
        rows = list(
            self.db.query(
                "SELECT * FROM applies WHERE target = ? ORDER BY id DESC LIMIT 1", [target]
            )
        )
        return rows[0] if rows else None

    def target_samples(self, rollout_id: int, target: str) -> list[dict[str, Any]]:
        """``target``'s samples in rollout ``rollout_id``, in the order they were taken."""
        return list(
            self.db.query(
                f"SELECT {', '.join(SAMPLE_COLUMNS)} FROM samples WHERE rollout_id = ? "
                "AND target = ? ORDER BY rowid",
                [rollout_id, target],
            )
        )
