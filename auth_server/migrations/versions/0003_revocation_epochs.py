"""Revocation epochs: revocation that no concurrent login can outlive (issue 12).

Revision ID: 0003_revocation_epochs
Revises: 0002
Create Date: 2026-11-29

- users and clients gain `token_epoch`, which every revoking operation increments before it
  revokes rows and every issuance re-checks before it commits (auth_server/epochs.py).
- authorization_codes gain `user_epoch`: the user's epoch at the login that issued the code.
- access_tokens gain `revoked_reason`, as refresh_families have, so the audit trail tells which
  revocation killed a token.

Plain ADD COLUMNs with a server default (no batch copy of tables that other rows reference,
as in 0002): existing rows start at epoch 0, existing codes with epoch 0.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0003_revocation_epochs"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        "users", sa.Column("token_epoch", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "clients", sa.Column("token_epoch", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "authorization_codes",
        sa.Column("user_epoch", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("access_tokens", sa.Column("revoked_reason", sa.String(length=50), nullable=True))


def downgrade():
    op.drop_column("access_tokens", "revoked_reason")
    op.drop_column("authorization_codes", "user_epoch")
    op.drop_column("clients", "token_epoch")
    op.drop_column("users", "token_epoch")
