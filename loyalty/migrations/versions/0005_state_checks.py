"""state checks: CHECK constraints on the columns that hold a closed set of values

Message and enrollment states, referral status, ledger kind and sync cursor
direction refuse any value outside their `loyalty.states` enum. The value
lists are frozen here, as they are today, because a migration outlives the
code: a later change to an enum comes with a migration of its own (a test
compares the constraints the migrations build with the enums).

SQLite cannot add a constraint to a table, so batch mode rebuilds each table;
`loyalty.db.upgrade` switches foreign keys off meanwhile (SQLite would otherwise
refuse to drop `enrollments` while messages point at it) and checks them after.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 20:00:00.000000

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: table → (column, the values it may hold); constraints are named ck_<table>_<column>.
CHECKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "messages": (
        "state",
        ("pending", "claimed", "sent", "suppressed", "deferred", "failed", "unknown"),
    ),
    "enrollments": ("state", ("active", "waiting", "completed", "exited", "converted")),
    "referrals": ("status", ("pending", "completed", "rejected")),
    "points_ledger": ("kind", ("earn", "redeem", "expire", "adjust", "bonus")),
    "sync_cursors": ("direction", ("push", "pull")),
}


def _condition(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join("'" + value + "'" for value in values)
    return f"{column} IN ({quoted})"


def upgrade() -> None:
    for table, (column, values) in CHECKS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_check_constraint(
                op.f(f"ck_{table}_{column}"), _condition(column, values)
            )


def downgrade() -> None:
    for table, (column, _) in reversed(CHECKS.items()):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"ck_{table}_{column}"), type_="check")
