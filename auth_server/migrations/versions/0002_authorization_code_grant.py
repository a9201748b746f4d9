"""Authorization code grant with PKCE: client types, redirect URIs, authorization codes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Generated with `flask --app auth_server db migrate --rev-id 0002`, then checked by hand:

- clients gains `client_type` and `redirect_uris` as plain ADD COLUMNs with a server default,
  so every existing client stays a confidential client with no redirect URI. Nothing here
  recreates `clients`: on SQLite a batch "move and copy" of a table that other rows reference
  fails with foreign keys on (and the database of `make run` has such rows). Public clients
  therefore keep `secret_hash` NOT NULL and store an empty one, which no secret matches.
- authorization_codes stores the code only as its SHA-256 digest; `family_id` links the
  login an exchange started, for revocation on a second use.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        "clients",
        sa.Column(
            "client_type", sa.String(length=12), server_default="confidential", nullable=False
        ),
    )
    op.add_column(
        "clients", sa.Column("redirect_uris", sa.Text(), server_default="", nullable=False)
    )

    op.create_table(
        "authorization_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("audience", sa.Text(), nullable=False),
        sa.Column("code_challenge", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("consumed_at", sa.BigInteger(), nullable=True),
        sa.Column("family_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_authorization_codes_client_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["refresh_families.id"],
            name=op.f("fk_authorization_codes_family_id_refresh_families"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_authorization_codes_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authorization_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_authorization_codes_code_hash")),
    )
    op.create_index(op.f("ix_authorization_codes_client_id"), "authorization_codes", ["client_id"])
    op.create_index(
        op.f("ix_authorization_codes_expires_at"), "authorization_codes", ["expires_at"]
    )
    op.create_index(op.f("ix_authorization_codes_family_id"), "authorization_codes", ["family_id"])
    op.create_index(op.f("ix_authorization_codes_user_id"), "authorization_codes", ["user_id"])


def downgrade():
    # Dropping the table drops its indexes too. Plain DROP COLUMNs (SQLite >= 3.35 has them),
    # for the same reason the upgrade does not recreate `clients`. Public clients survive as
    # confidential clients whose empty secret_hash no secret matches: unusable, not open.
    op.drop_table("authorization_codes")
    op.drop_column("clients", "redirect_uris")
    op.drop_column("clients", "client_type")
