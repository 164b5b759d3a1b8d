"""task operation: EXECUTE, RETRY or ROLLBACK (a rolled-back task cannot be retried)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("operation", sa.String(length=32), server_default="EXECUTE", nullable=False)
        )
        batch_op.create_index("ix_tasks_name", ["name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_name")
        batch_op.drop_column("operation")
