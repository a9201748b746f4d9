"""What the authorization server counts, beyond requests: derived from committed audit events
(so a rolled-back token is never counted) and from introspection answers."""

from __future__ import annotations

from shared.service.metrics import Metrics

# audit event -> the grant that produced the tokens
_ISSUED = {"token_issued": None, "token_refreshed": "refresh_token"}


class AuthMetrics(Metrics):
    def __init__(self) -> None:
        super().__init__("auth_server")
        self.tokens_issued = self.counter(
            "tokens_issued_total", "Access tokens issued, by grant type.", ["grant_type"]
        )
        self.introspections = self.counter(
            "introspections_total", "Introspection answers, by result.", ["result"]
        )
        self.revocations = self.counter(
            "revocations_total",
            "Revocations: one token, a login (family), or every token of a user.",
            ["kind", "reason"],
        )
        self.reuse_detected = self.counter(
            "refresh_reuse_detected_total", "Replayed refresh tokens (family revoked).", []
        )
        self.login_throttled = self.counter(
            "login_throttled_total", "Logins refused with 429, by limit.", ["limit"]
        )
        self.password_hashing_busy = self.counter(
            "password_hashing_busy_total",
            "Password checks refused with 503: every hashing slot of the worker was taken.",
            [],
        )
        self.revocation_events = self.counter(
            "revocation_events_total",
            "Revocation events for resource-server caches, by result (published, failed).",
            ["result"],
        )
        # Their ratio is the mean batch of the group commit (auth_server/group_commit.py): near
        # 1 under load means the requests are not meeting (the worker is blocked while it writes).
        self.token_batches = self.counter(
            "token_batches_total",
            "client_credentials token writes sent to PostgreSQL (statements, each a batch).",
            [],
        )
        self.token_batch_rows = self.counter(
            "token_batch_rows_total", "Tokens in those statements (rows written together).", []
        )
        self.audit_events = self.counter(
            "audit_events_total", "Committed audit events, by event.", ["event"]
        )

    def count_token_batch(self, rows: int) -> None:
        self.token_batches.inc()
        self.token_batch_rows.inc(rows)

    def count_revocation_event(self, result: str) -> None:
        self.revocation_events.labels(result).inc()

    def count_login_throttled(self, limit: str) -> None:
        self.login_throttled.labels(limit).inc()

    def count_password_hashing_busy(self) -> None:
        self.password_hashing_busy.inc()

    def on_audit_event(self, event: str, fields: dict) -> None:
        self.audit_events.labels(event).inc()
        if event in _ISSUED:
            self.tokens_issued.labels(_ISSUED[event] or fields.get("grant_type", "unknown")).inc()
        elif event == "refresh_token_reuse_detected":
            self.reuse_detected.inc()
            self.revocations.labels("family", "refresh_reuse").inc()
        elif event == "authorization_code_reuse_detected":
            if fields.get("family_revoked"):
                self.revocations.labels("family", "authorization_code_reuse").inc()
        elif event == "token_revoked":
            kind = "family" if fields.get("token_use") == "refresh_token" else "access_token"
            # A session signed out on the account page says so; a client's request does not.
            self.revocations.labels(kind, fields.get("reason") or "client_request").inc()
        elif event == "consent_withdrawn":
            self.revocations.labels("user_client", "consent_withdrawn").inc()
        elif event == "user_tokens_revoked":
            self.revocations.labels("user", fields.get("reason", "unknown")).inc()
        elif event == "password_changed":
            self.revocations.labels("user", "password_changed").inc()
