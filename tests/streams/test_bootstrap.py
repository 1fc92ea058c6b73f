"""One bootstrap precedence for every command: flag > override env > file > env > default."""

from __future__ import annotations

import pytest

from streamfer.streams.bootstrap import Bootstrap, resolve_bootstrap

FULL_ENV = {"STREAMFER__KAFKA__BOOTSTRAP_SERVERS": "override:1", "STREAMFER_BOOTSTRAP": "plain:3"}


@pytest.mark.parametrize(
    ("flag", "file_value", "env", "expected"),
    [
        ("flag:0", "file:2", FULL_ENV, Bootstrap("flag:0", "flag (--bootstrap)")),
        (None, "file:2", FULL_ENV,
         Bootstrap("override:1", "env (STREAMFER__KAFKA__BOOTSTRAP_SERVERS)")),
        (None, "file:2", {"STREAMFER_BOOTSTRAP": "plain:3"}, Bootstrap("file:2", "file")),
        (None, None, {"STREAMFER_BOOTSTRAP": "plain:3"},
         Bootstrap("plain:3", "env (STREAMFER_BOOTSTRAP)")),
        (None, None, {}, Bootstrap("127.0.0.1:9092", "default")),
        # empty values count as not given
        ("", "", {"STREAMFER__KAFKA__BOOTSTRAP_SERVERS": "", "STREAMFER_BOOTSTRAP": ""},
         Bootstrap("127.0.0.1:9092", "default")),
    ],
)  # fmt: skip
def test_each_source_wins_over_those_below_it(
    flag: str | None, file_value: str | None, env: dict[str, str], expected: Bootstrap
) -> None:
    assert resolve_bootstrap(flag, file_value, env) == expected


def test_the_process_environment_is_read_when_none_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STREAMFER__KAFKA__BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("STREAMFER_BOOTSTRAP", "from-env:9")
    assert resolve_bootstrap() == Bootstrap("from-env:9", "env (STREAMFER_BOOTSTRAP)")
