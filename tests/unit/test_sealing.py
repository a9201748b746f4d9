"""What is kept encrypted at rest: a refresh grace response (GraceSealer, readable only with the
consumed refresh token) and private signing keys (KeyCipher, Fernet, re-keyable)."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from auth_server.keys import KeyCipher
from auth_server.tokens import GraceSealer
from shared.service.settings import ConfigurationError

RESPONSE = {"access_token": "eyJ.a.b", "refresh_token": "next", "token_type": "Bearer"}


def test_grace_response_opens_only_with_the_consumed_token():
    blob = GraceSealer.seal("old-refresh-token", RESPONSE)
    assert "next" not in blob and "eyJ" not in blob
    assert GraceSealer.open("old-refresh-token", blob) == RESPONSE
    assert GraceSealer.open("another-token", blob) is None


def test_grace_sealing_uses_a_fresh_nonce_and_detects_tampering():
    first, second = (GraceSealer.seal("t", RESPONSE) for _ in range(2))
    assert first != second
    tampered = first[:-4] + ("AAAA" if not first.endswith("AAAA") else "BBBB")
    assert GraceSealer.open("t", tampered) is None


PEM = b"-----BEGIN PRIVATE KEY-----\nMIG...\n-----END PRIVATE KEY-----\n"


def test_key_cipher_without_keys_stores_plain_text_and_says_so():
    cipher = KeyCipher(None)
    assert not cipher.enabled
    assert cipher.seal(PEM) == (PEM.decode(), False)
    assert cipher.open(PEM.decode(), False) == PEM


def test_key_cipher_encrypts_and_a_second_key_re_keys():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    stored, encrypted = KeyCipher([old]).seal(PEM)
    assert encrypted and "PRIVATE KEY" not in stored
    rekeyed = KeyCipher([new, old])  # the first encrypts, all decrypt
    assert rekeyed.open(stored, True) == PEM
    restored, _ = rekeyed.seal(PEM)
    assert KeyCipher([new]).open(restored, True) == PEM


def test_key_cipher_refuses_a_wrong_or_missing_key_with_a_configuration_error():
    stored, _ = KeyCipher([Fernet.generate_key().decode()]).seal(PEM)
    with pytest.raises(ConfigurationError, match="cannot decrypt"):
        KeyCipher([Fernet.generate_key().decode()]).open(stored, True)
    with pytest.raises(ConfigurationError, match="not set"):
        KeyCipher(None).open(stored, True)


def test_key_cipher_from_settings_reads_the_environment_list_then_the_file(tmp_path):
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    stored, _ = KeyCipher([second]).seal(PEM)
    assert KeyCipher.from_settings(f"{first}, {second}", "/nonexistent").open(stored, True) == PEM
    key_file = tmp_path / "kek"
    assert KeyCipher.create_key_file(str(key_file))
    assert not KeyCipher.create_key_file(str(key_file))  # never overwritten
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert KeyCipher.from_settings(None, str(key_file)).enabled
    assert not KeyCipher.from_settings(None, str(tmp_path / "missing")).enabled
    with pytest.raises(ConfigurationError, match="Fernet keys"):
        KeyCipher.from_settings("not-a-fernet-key", "/nonexistent")
