"""Initial schema of the resource server (the notes API).

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Generated from the models, then checked by hand: names follow
shared.service.database.NAMING_CONVENTION. Frozen: a later model change gets its own revision.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_sub", sa.String(length=255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes")),
        # AUTOINCREMENT: SQLite never reuses the id of a deleted last row.
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_notes_owner_sub"), "notes", ["owner_sub"])


def downgrade():
    op.drop_table("notes")
