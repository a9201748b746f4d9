"""The revocation generation: one counter every committed revocation increments, so workers that
remember introspected tokens (auth_server/introspection_memory.py) know when to forget them.

Revision ID: 0008_revocation_generation
Revises: 0007_account
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0008_revocation_generation"
down_revision = "0007_account"
branch_labels = None
depends_on = None


def upgrade():
    table = op.create_table(
        "revocation_generation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revocation_generation")),
    )
    op.bulk_insert(table, [{"id": 1, "value": 0}])


def downgrade():
    op.drop_table("revocation_generation")
