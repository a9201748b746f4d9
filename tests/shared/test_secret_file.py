"""SecretFile: a secret followed as its file is rewritten."""

from __future__ import annotations

import os

import pytest

from shared.service.secret_file import SecretFile, SecretFileError


def replace(path, value: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(value)
    os.replace(temporary, path)


def test_a_replaced_file_is_read_again(tmp_path):
    path = tmp_path / "secret"
    path.write_text("first\n")
    secret = SecretFile(path)
    assert secret.current() == "first"
    replace(path, "second\n")
    assert secret.current() == "second"


def test_a_vanished_or_emptied_file_keeps_the_last_secret(tmp_path):
    path = tmp_path / "secret"
    path.write_text("first")
    secret = SecretFile(path)
    path.write_text("")
    assert secret.current() == "first"
    assert secret.reload() is False
    path.unlink()
    assert secret.current() == "first"


def test_reload_reads_a_rewrite_the_stat_cannot_see(tmp_path):
    path = tmp_path / "secret"
    path.write_text("aaaa")
    secret = SecretFile(path)
    before = os.stat(path)
    path.write_text("bbbb")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert secret.current() == "aaaa"
    assert secret.reload() is True
    assert secret.current() == "bbbb"


def test_a_missing_file_is_an_error_at_once(tmp_path):
    with pytest.raises(OSError):
        SecretFile(tmp_path / "absent")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SecretFileError):
        SecretFile(tmp_path / "empty")
