"""Revoked self-contained access tokens: client_credentials tokens are no longer stored, so a
revocation of one before its expiry is a row here, kept until the token expires.

Revision ID: 0009_revoked_access_tokens
Revises: 0008_revocation_generation
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0009_revoked_access_tokens"
down_revision = "0008_revocation_generation"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "revoked_access_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_reason", sa.String(length=50), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_revoked_access_tokens_client_id_clients"),
        ),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_revoked_access_tokens")),
    )
    op.create_index(
        op.f("ix_revoked_access_tokens_client_id"), "revoked_access_tokens", ["client_id"]
    )
    op.create_index(
        op.f("ix_revoked_access_tokens_expires_at"), "revoked_access_tokens", ["expires_at"]
    )


def downgrade():
    op.drop_index(op.f("ix_revoked_access_tokens_expires_at"), table_name="revoked_access_tokens")
    op.drop_index(op.f("ix_revoked_access_tokens_client_id"), table_name="revoked_access_tokens")
    op.drop_table("revoked_access_tokens")
