"""Login-throttle counters in the database: login_attempts.

Revision ID: 0004_login_attempts
Revises: 0003_revocation_epochs
Create Date: 2026-11-29

One row per (scope, key fingerprint, window start), incremented atomically with
INSERT ... ON CONFLICT DO UPDATE ... RETURNING before any password is hashed
(auth_server/throttle.py), so every worker and replica of the authorization server counts in one
place without Redis. `expires_at` is indexed for `tokens purge`.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0004_login_attempts"
down_revision = "0003_revocation_epochs"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "login_attempts",
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("key_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "scope", "key_fingerprint", "window_start", name=op.f("pk_login_attempts")
        ),
    )
    op.create_index(op.f("ix_login_attempts_expires_at"), "login_attempts", ["expires_at"])


def downgrade():
    op.drop_table("login_attempts")
