"""Operator commands: `flask --app auth_server users|clients|keys|tokens|demo ...`.

Run from the checkout with no environment, they act on the same database `make run` serves.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import inspect, select

from auth_server.accounts import AccountError
from auth_server.clients import (
    DEFAULT_SECRET_OVERLAP,
    SUPPORTED_GRANT_TYPES,
    ClientRegistrationError,
    disable_client,
    register_client,
    rotate_client_secret,
    set_served_audiences,
)
from auth_server.db import db
from auth_server.keys import ensure_signing_keys, prepare_signing_keys, rotate_signing_keys
from auth_server.maintenance import purge_expired
from auth_server.models import Client, SigningKey, User
from auth_server.operator_changes import delete_client, enable_client, enable_user, update_client
from auth_server.store import find_client, find_user
from shared.service import demo_seed

users = AppGroup("users", help="Create, list, disable, enable and cut off users.")
clients = AppGroup(
    "clients", help="Register, list, update, disable, enable and delete OAuth clients."
)
keys = AppGroup("keys", help="Inspect and rotate JWT signing keys.")
tokens = AppGroup("tokens", help="Token housekeeping.")
demo = AppGroup("demo", help="The embedded demo (make run).")


def _components():
    return current_app.extensions["tessera"]


def _user_or_fail(username: str):
    user = find_user(db.session, username)
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    return user


def _words(value: str | None) -> list[str]:
    return value.replace(",", " ").split() if value else []


@users.command("create")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--scopes", default=None, help="Scopes the user may delegate (default: no limit).")
def create_user(username: str, password: str, scopes: str | None) -> None:
    """Create a user."""
    try:
        user = (
            _components()
            .accounts()
            .create_user(username, password, _words(scopes) if scopes is not None else None)
        )
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created user {user.username} (sub {user.subject})")


@users.command("set-password")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def set_password(username: str, password: str) -> None:
    """Set a user's password and revoke every token the user holds."""
    try:
        families, access = (
            _components()
            .accounts()
            .set_password(_user_or_fail(username), password, actor="operator")
        )
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"password changed; revoked {families} logins and {access} access tokens")


@users.command("revoke-tokens")
@click.argument("username")
def revoke_tokens(username: str) -> None:
    """Revoke every refresh family and access token of a user (account compromise)."""
    families, access = (
        _components()
        .accounts()
        .revoke_tokens(_user_or_fail(username), actor="operator", reason="operator_revoked")
    )
    click.echo(f"revoked {families} logins and {access} access tokens of {username}")


@users.command("disable")
@click.argument("username")
def disable_user(username: str) -> None:
    """Disable a user: no more logins, and every token revoked at once."""
    families, access = _components().accounts().disable(_user_or_fail(username), actor="operator")
    click.echo(f"disabled {username}; revoked {families} logins and {access} access tokens")


@clients.command("create")
@click.argument("client_id")
@click.option("--name", default="")
@click.option(
    "--grant-types",
    default=None,
    help=f"Space/comma separated, among: {', '.join(SUPPORTED_GRANT_TYPES)}. Default: "
    "client_credentials, authorization_code refresh_token with --public, none with "
    "--can-introspect.",
)
@click.option("--scopes", default="", help="Scopes the client may ask for.")
@click.option(
    "--audiences",
    "--audience",
    "audiences",
    default="",
    help="Resource identifiers (RFC 8707) it may target; with --can-introspect, the ones it "
    "serves (required: introspection answers only about tokens for them).",
)
@click.option(
    "--redirect-uris",
    default="",
    help="Space separated, for authorization_code: exact https URIs (http only on loopback).",
)
@click.option(
    "--public",
    is_flag=True,
    help="A public client (browser app): no secret; authorization_code (PKCE) and refresh_token.",
)
@click.option("--can-introspect", is_flag=True, help="A resource server: may call introspection.")
@click.option(
    "--third-party",
    is_flag=True,
    help="An app not run by this deployment: users see a consent screen naming it and its "
    "scopes (authorization_code only).",
)
def create_client(
    client_id,
    name,
    grant_types,
    scopes,
    audiences,
    redirect_uris,
    public,
    can_introspect,
    third_party,
) -> None:
    """Register a client; a confidential client's generated secret is shown once, and only its
    hash is stored. A public client gets none."""
    if grant_types is None:
        if can_introspect:
            grant_types = ""
        elif public or third_party:
            grant_types = "authorization_code refresh_token"
        else:
            grant_types = "client_credentials"
    try:
        client, secret = register_client(
            db.session,
            client_id,
            name=name,
            grant_types=_words(grant_types),
            scopes=_words(scopes),
            audiences=_words(audiences),
            redirect_uris=redirect_uris.split(),
            client_type="public" if public else "confidential",
            can_introspect=can_introspect,
            third_party=third_party,
        )
    except ClientRegistrationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"client_id:     {client.client_id}")
    if secret is None:
        click.echo("public client: no secret (token endpoint auth method `none`, PKCE required)")
        return
    click.echo(f"client_secret: {secret}")
    click.echo("The secret is shown only now; store it in the client's secret store.")


@clients.command("set-audiences")
@click.argument("client_id")
@click.argument("audiences", nargs=-1, required=True)
def set_audiences(client_id: str, audiences: tuple[str, ...]) -> None:
    """Set the audiences a resource server's (introspecting) client serves, e.g. for one
    registered before introspection needed them; it keeps no grant type."""
    try:
        client = set_served_audiences(db.session, client_id, list(audiences))
    except ClientRegistrationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{client.client_id} serves {client.audiences}")


@clients.command("disable")
@click.argument("client_id")
def disable_client_command(client_id: str) -> None:
    """Disable a client: no more tokens for it, and every token and code it holds revoked at
    once (its users' logins through it included). Safe to run again."""
    client = find_client(db.session, client_id)
    if client is None:
        raise click.ClickException(f"no client {client_id!r}")
    components = _components()
    families, access = disable_client(
        db.session, client, actor="operator", now=components.now(), steps=components.steps
    )
    components.clients.forget(client_id)
    click.echo(f"disabled {client_id}; {_client_revocation(families, access)}")
    click.echo(
        "other workers stop accepting its secret within "
        f"{components.settings.client_cache_seconds:g} s; its tokens are dead now"
    )


def _client_revocation(families: int, access: int) -> str:
    # Self-contained client_credentials tokens are not stored, so not counted: the client's
    # epoch moved, which makes every one it holds inactive (auth_server/self_contained.py).
    return (
        f"revoked {families} logins and {access} access tokens "
        "(stored ones; its self-contained tokens are inactive too)"
    )


@clients.command("rotate-secret")
@click.argument("client_id")
@click.option(
    "--overlap",
    type=click.IntRange(min=0),
    default=DEFAULT_SECRET_OVERLAP,
    show_default=True,
    help="Seconds the current secret keeps working, so the client's deployments can switch "
    "to the new one first (0: it stops at once).",
)
def rotate_secret(client_id: str, overlap: int) -> None:
    """Give a confidential client a new secret, shown once; the old one keeps working for
    --overlap seconds, then is refused. A secret from an earlier rotation stops at once."""
    components = _components()
    try:
        client, secret = rotate_client_secret(
            db.session, client_id, overlap=overlap, now=components.now()
        )
    except ClientRegistrationError as exc:
        raise click.ClickException(str(exc)) from exc
    components.clients.forget(client_id)
    click.echo(f"client_id:     {client.client_id}")
    click.echo(f"client_secret: {secret}")
    click.echo("The secret is shown only now; store it in the client's secret store.")
    if client.previous_secret_expires_at:
        click.echo(f"The previous secret works until {_utc(client.previous_secret_expires_at)}.")
    else:
        click.echo(
            "The previous secret no longer works here; other workers stop accepting it within "
            f"{components.settings.client_cache_seconds:g} s."
        )


def _utc(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
def list_clients(as_json: bool) -> None:
    """List registered clients (never their secrets), and when a rotated-out secret expires."""
    now = _components().now()
    rows = db.session.scalars(select(Client).order_by(Client.client_id)).all()
    if as_json:
        _echo_json([_client_json(c) for c in rows])
        return
    for c in rows:
        flags = ",".join(
            f
            for f, on in (
                ("third-party", c.third_party),
                ("introspect", c.can_introspect),
                ("disabled", c.disabled),
            )
            if on
        )
        previous = ""
        if c.previous_secret_expires_at and c.previous_secret_expires_at > now:
            previous = f"\tprevious_secret_expires={_utc(c.previous_secret_expires_at)}"
        click.echo(
            f"{c.client_id}\t{c.client_type}\tgrants={c.grant_types or '-'}"
            f"\tscopes={c.scopes or '-'}\taudiences={c.audiences or '-'}"
            f"\tredirect_uris={c.redirect_uris or '-'}\t{flags}{previous}"
        )


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
def list_keys(as_json: bool) -> None:
    """List signing keys and their states (never the private keys)."""
    rows = db.session.scalars(select(SigningKey).order_by(SigningKey.created_at)).all()
    if as_json:
        _echo_json(
            [
                {
                    "kid": k.kid,
                    "alg": k.alg,
                    "state": k.state,
                    "encrypted": k.private_key_encrypted,
                    "created_at": k.created_at,
                    "activated_at": k.activated_at,
                    "retired_at": k.retired_at,
                    "remove_after": k.remove_after,
                }
                for k in rows
            ]
        )
        return
    for k in rows:
        click.echo(f"{k.kid}\t{k.alg}\t{k.state}\tencrypted={k.private_key_encrypted}")


@keys.command("rotate")
def rotate_keys() -> None:
    """Promote the published next key to active, retire the active one, publish a new next."""
    components = _components()
    settings = components.settings
    now = components.now()
    result = rotate_signing_keys(
        db.session,
        settings.signing_alg,
        components.cipher,
        now,
        settings.key_retirement_seconds,
        actor="operator",
    )
    if result is None:
        raise click.ClickException("another process rotated the keys at the same time; retry")
    click.echo(
        f"active: {result.active_kid}\nnext:   {result.next_kid}\nretired: {result.retired_kid}"
    )
    click.echo(f"every worker signs with the new key within {settings.key_cache_seconds:g} s")


@tokens.command("purge")
@click.option("--batch-size", default=1000, show_default=True)
def purge(batch_size: int) -> None:
    """Delete expired tokens, dead refresh families, old audit events and removed keys."""
    components = _components()
    counts = purge_expired(
        db.session,
        components.now(),
        components.settings.audit_retention_days * 86400,
        batch_size,
        refresh_token_idle_ttl=components.settings.refresh_token_idle_ttl,
    )
    click.echo(" ".join(f"{name}={count}" for name, count in counts.items()))


@demo.command("setup")
def demo_setup() -> None:
    """Seed signing keys and the demo user and clients (idempotent).

    The schema comes first, from `flask --app auth_server db upgrade`; this only adds rows.
    """
    components = _components()
    settings = components.settings
    if not settings.tessera_demo:
        raise click.ClickException("demo setup runs only with TESSERA_DEMO=1 (make run sets it)")
    if not inspect(db.engine).has_table(User.__tablename__):
        raise click.ClickException(
            "the database has no tables: run `flask --app auth_server db upgrade` first"
        )
    ensure_signing_keys(db.session, settings.signing_alg, components.cipher, components.now())
    if find_user(db.session, demo_seed.USER[0]) is None:
        components.accounts().create_user(*demo_seed.USER)
    for spec in demo_seed.CLIENTS:
        client = find_client(db.session, spec["client_id"])
        if client is None:
            register_client(db.session, **spec)
        elif client.can_introspect and not client.audiences:
            # A demo database from before introspection needed the audiences served.
            set_served_audiences(db.session, client.client_id, spec["audiences"])
    click.echo("demo data:\n" + demo_seed.summary())


def register(app: Flask) -> None:
    for group in (users, clients, keys, tokens, demo):
        app.cli.add_command(group)


@keys.command("prepare")
def prepare_keys() -> None:
    """Create missing signing keys and rotate the active one if SIGNING_KEY_ROTATION_DAYS says
    it is due. Start-up does the same; schedule this (daily) when rotation is on, since serving
    requests only ever reads the keys."""
    components = _components()
    settings = components.settings
    result = prepare_signing_keys(
        db.session,
        settings.signing_alg,
        components.cipher,
        components.now(),
        settings.key_retirement_seconds,
        settings.signing_key_rotation_days,
    )
    if result is None:
        click.echo("signing keys ready; no rotation due")
    else:
        click.echo(f"rotated: active {result.active_kid}, retired {result.retired_kid}")


# -- operator changes without SQL, and --json listings ----------------------------------------


def _echo_json(rows: list[dict[str, Any]]) -> None:
    click.echo(json.dumps(rows, indent=2, sort_keys=True))


def _client_json(c: Client) -> dict[str, Any]:
    return {
        "client_id": c.client_id,
        "name": c.name,
        "client_type": c.client_type,
        "grant_types": c.grant_types.split(),
        "scopes": c.scopes.split(),
        "audiences": c.audiences.split(),
        "redirect_uris": c.redirect_uris.split(),
        "can_introspect": c.can_introspect,
        "disabled": c.disabled,
        "created_at": c.created_at,
        "previous_secret_expires_at": c.previous_secret_expires_at,
    }


@clients.command("enable")
@click.argument("client_id")
def enable_client_command(client_id: str) -> None:
    """Let a disabled client get tokens again (what disabling revoked stays revoked)."""
    components = _components()
    try:
        enable_client(db.session, client_id, actor="operator", now=components.now())
    except ClientRegistrationError as exc:
        raise click.ClickException(str(exc)) from exc
    components.clients.forget(client_id)
    click.echo(f"enabled {client_id}")


@clients.command("update")
@click.argument("client_id")
@click.option("--scopes", default=None, help="Replace the scopes it may ask for.")
@click.option("--audiences", default=None, help="Replace its audiences (RFC 8707).")
@click.option("--redirect-uris", default=None, help="Replace its redirect URIs (space separated).")
def update_client_command(
    client_id: str, scopes: str | None, audiences: str | None, redirect_uris: str | None
) -> None:
    """Replace a client's scopes, audiences or redirect URIs, checked as at registration.
    Taking any away revokes every token and code the client holds."""
    if scopes is None and audiences is None and redirect_uris is None:
        raise click.UsageError("nothing to change: give --scopes, --audiences or --redirect-uris")
    components = _components()
    try:
        client, revoked = update_client(
            db.session,
            client_id,
            actor="operator",
            now=components.now(),
            scopes=_words(scopes) if scopes is not None else None,
            audiences=_words(audiences) if audiences is not None else None,
            redirect_uris=redirect_uris.split() if redirect_uris is not None else None,
        )
    except ClientRegistrationError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    components.clients.forget(client_id)
    click.echo(
        f"{client.client_id}: scopes={client.scopes or '-'} audiences={client.audiences or '-'} "
        f"redirect_uris={client.redirect_uris or '-'}"
    )
    if revoked is not None:
        click.echo(_client_revocation(*revoked))


@clients.command("delete")
@click.argument("client_id")
def delete_client_command(client_id: str) -> None:
    """Delete a disabled client and every token, code and login it holds (the audit log stays)."""
    components = _components()
    try:
        delete_client(db.session, client_id, actor="operator", now=components.now())
    except ClientRegistrationError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    components.clients.forget(client_id)
    click.echo(f"deleted {client_id}")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
def list_users(as_json: bool) -> None:
    """List users (never their password hashes)."""
    rows = db.session.scalars(select(User).order_by(User.username)).all()
    if as_json:
        _echo_json(
            [
                {
                    "username": u.username,
                    "subject": u.subject,
                    "allowed_scopes": u.scope_limit,
                    "disabled": u.disabled,
                    "created_at": u.created_at,
                }
                for u in rows
            ]
        )
        return
    for u in rows:
        scopes = u.allowed_scopes if u.allowed_scopes is not None else "*"
        state = "disabled" if u.disabled else "enabled"
        click.echo(f"{u.username}	{u.subject}	scopes={scopes or '-'}	{state}")


@users.command("enable")
@click.argument("username")
def enable_user_command(username: str) -> None:
    """Let a disabled user log in again (tokens revoked when disabled stay revoked)."""
    changed = enable_user(
        db.session, _user_or_fail(username), actor="operator", now=_components().now()
    )
    click.echo(f"enabled {username}" if changed else f"{username} was not disabled")
