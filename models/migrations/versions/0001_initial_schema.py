"""Initial schema (初始表结构): the tables of `models.tables` as of issue 3.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-25 13:17:33.908323
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dead_letter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dead_letter_at", "dead_letter", ["at"], unique=False)
    op.create_index("ix_dead_letter_order_id", "dead_letter", ["order_id"], unique=False)

    op.create_table(
        "dispatch_decision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("lead_unit", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("co_units", sa.JSON(), nullable=False),
        sa.Column("manual", sa.Boolean(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("model_version", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("against", sa.JSON(), nullable=False),
        sa.Column("line_unit", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("territorial_unit", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("line_first", sa.Boolean(), nullable=False),
        sa.Column("trigger", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("appeal_type", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_dispatch_decision_order_id", "dispatch_decision", ["order_id"], unique=False
    )

    op.create_table(
        "event_log",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("rejection_code", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("rejection_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_event_log_event_id", "event_log", ["event_id"], unique=True)
    op.create_index("ix_event_log_kind", "event_log", ["kind"], unique=False)
    op.create_index("ix_event_log_order_id", "event_log", ["order_id"], unique=False)

    op.create_table(
        "revisit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("contacted", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("solved", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("satisfaction", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_revisit_order_id", "revisit", ["order_id"], unique=False)

    op.create_table(
        "training_label",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_training_label_order_id", "training_label", ["order_id"], unique=False)

    op.create_table(
        "unit",
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("duties", sa.Text(), nullable=False),
        sa.Column("areas", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_index("ix_unit_name", "unit", ["name"], unique=True)

    op.create_table(
        "work_order",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("caller", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("enterprise_name", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("credit_code", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("address", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("area", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("appeal_type", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("is_enterprise", sa.Boolean(), nullable=False),
        sa.Column("legacy", sa.Boolean(), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.Column("content_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("lead_unit", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("co_units", sa.JSON(), nullable=False),
        sa.Column("returned_units", sa.JSON(), nullable=False),
        sa.Column("return_count", sa.Integer(), nullable=False),
        sa.Column("reopen_count", sa.Integer(), nullable=False),
        sa.Column("supervised", sa.Boolean(), nullable=False),
        sa.Column("overdue", sa.JSON(), nullable=False),
        sa.Column("deadlines", sa.JSON(), nullable=False),
        sa.Column("next_due", sa.DateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("model_version", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_work_order_credit_code", "work_order", ["credit_code"], unique=False)
    op.create_index(
        "ix_work_order_enterprise_name", "work_order", ["enterprise_name"], unique=False
    )
    op.create_index("ix_work_order_lead_unit", "work_order", ["lead_unit"], unique=False)
    op.create_index("ix_work_order_next_due", "work_order", ["next_due"], unique=False)
    op.create_index("ix_work_order_received_at", "work_order", ["received_at"], unique=False)
    op.create_index("ix_work_order_state", "work_order", ["state"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_work_order_state", table_name="work_order")
    op.drop_index("ix_work_order_received_at", table_name="work_order")
    op.drop_index("ix_work_order_next_due", table_name="work_order")
    op.drop_index("ix_work_order_lead_unit", table_name="work_order")
    op.drop_index("ix_work_order_enterprise_name", table_name="work_order")
    op.drop_index("ix_work_order_credit_code", table_name="work_order")

    op.drop_table("work_order")
    op.drop_index("ix_unit_name", table_name="unit")

    op.drop_table("unit")
    op.drop_index("ix_training_label_order_id", table_name="training_label")

    op.drop_table("training_label")
    op.drop_index("ix_revisit_order_id", table_name="revisit")

    op.drop_table("revisit")
    op.drop_index("ix_event_log_order_id", table_name="event_log")
    op.drop_index("ix_event_log_kind", table_name="event_log")
    op.drop_index("ix_event_log_event_id", table_name="event_log")

    op.drop_table("event_log")
    op.drop_index("ix_dispatch_decision_order_id", table_name="dispatch_decision")

    op.drop_table("dispatch_decision")
    op.drop_index("ix_dead_letter_order_id", table_name="dead_letter")
    op.drop_index("ix_dead_letter_at", table_name="dead_letter")

    op.drop_table("dead_letter")
