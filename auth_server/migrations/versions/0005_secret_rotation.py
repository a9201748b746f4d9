"""Client-secret rotation with an overlap, and login activity for sliding expiration (issue 10).

Revision ID: 0005_secret_rotation
Revises: 0004_login_attempts
Create Date: 2026-11-29

- clients gain `previous_secret_hash` and `previous_secret_expires_at`: the secret replaced by
  `clients rotate-secret`, as a SHA-256 digest, accepted until that time.
- refresh_families gain `last_active_at`: the last validated use of one of the login's access
  tokens (auth_server/activity.py); existing logins start from their last refresh.

Plain ADD COLUMNs (no batch copy of tables other rows reference, as in 0003).
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0005_secret_rotation"
down_revision = "0004_login_attempts"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("clients", sa.Column("previous_secret_hash", sa.String(length=64), nullable=True))
    op.add_column(
        "clients", sa.Column("previous_secret_expires_at", sa.BigInteger(), nullable=True)
    )
    op.add_column(
        "refresh_families",
        sa.Column("last_active_at", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.execute("UPDATE refresh_families SET last_active_at = last_used_at")


def downgrade():
    op.drop_column("refresh_families", "last_active_at")
    op.drop_column("clients", "previous_secret_expires_at")
    op.drop_column("clients", "previous_secret_hash")
