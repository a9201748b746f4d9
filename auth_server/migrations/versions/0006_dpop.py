"""DPoP (RFC 9449): tokens, logins and codes bound to a key, and the proofs already seen.

Revision ID: 0006_dpop
Revises: 0004_login_attempts
Create Date: 2026-11-29

- access_tokens.dpop_jkt: the `cnf.jkt` of a DPoP-bound access token (NULL: a bearer token).
- refresh_families.dpop_jkt: a public client's login bound to its DPoP key (RFC 9449 §5).
- authorization_codes.dpop_jkt: the `dpop_jkt` of the authorization request (§10).
- dpop_proofs_seen: one row per used proof (digest of jkt and jti) until it is stale (§11.1).

Nullable ADD COLUMNs: existing rows stay bearer, unbound.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0006_dpop"
down_revision = "0005_secret_rotation"
branch_labels = None
depends_on = None


def upgrade():
    for table in ("access_tokens", "refresh_families", "authorization_codes"):
        op.add_column(table, sa.Column("dpop_jkt", sa.String(length=43), nullable=True))
    op.create_table(
        "dpop_proofs_seen",
        sa.Column("proof_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("proof_hash", name=op.f("pk_dpop_proofs_seen")),
    )
    op.create_index(op.f("ix_dpop_proofs_seen_expires_at"), "dpop_proofs_seen", ["expires_at"])


def downgrade():
    op.drop_table("dpop_proofs_seen")
    for table in ("authorization_codes", "refresh_families", "access_tokens"):
        op.drop_column(table, "dpop_jkt")
