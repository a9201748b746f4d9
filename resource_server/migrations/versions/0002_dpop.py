"""DPoP (RFC 9449 §11.1): the proofs this resource server has already accepted.

Revision ID: 0002_dpop
Revises: 0001
Create Date: 2026-11-29

One row per used proof (SHA-256 of its key thumbprint and jti) until the proof is too old to be
accepted anyway; shared/guard/dpop_replay.py inserts with ON CONFLICT DO NOTHING and prunes.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0002_dpop"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "dpop_proofs_seen",
        sa.Column("proof_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("proof_hash", name=op.f("pk_dpop_proofs_seen")),
    )
    op.create_index(op.f("ix_dpop_proofs_seen_expires_at"), "dpop_proofs_seen", ["expires_at"])


def downgrade():
    op.drop_table("dpop_proofs_seen")
