"""The account page and consent: where each login came from, third-party clients, consents.

Revision ID: 0007_account
Revises: 0004_login_attempts
Create Date: 2026-11-29

refresh_families and authorization_codes get the IP address and User-Agent of the sign-in (the
account page lists each login with them); clients get `third_party` (such an app asks the
user's consent); `consents` remembers each user's Allow per app with the scopes granted.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0007_account"
down_revision = "0006_dpop"
branch_labels = None
depends_on = None


def upgrade():
    for table in ("refresh_families", "authorization_codes"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("ip", sa.String(length=64), nullable=True))
            batch.add_column(sa.Column("user_agent", sa.String(length=300), nullable=True))
    with op.batch_alter_table("clients") as batch:
        batch.add_column(
            sa.Column("third_party", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("granted_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_consents_client_id_clients")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_consents_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
        sa.UniqueConstraint("user_id", "client_id", name=op.f("uq_consents_user_id")),
    )
    op.create_index(op.f("ix_consents_client_id"), "consents", ["client_id"])
    op.create_index(op.f("ix_consents_user_id"), "consents", ["user_id"])


def downgrade():
    op.drop_table("consents")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("third_party")
    for table in ("authorization_codes", "refresh_families"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("user_agent")
            batch.drop_column("ip")
