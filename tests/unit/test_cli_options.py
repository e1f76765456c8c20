"""`--data-dir` and `--log-level` work before or after the sub-command; a bad one says why."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from agenttasks.cli import build_parser, main
from agenttasks.servers.secrets import load_or_create_secrets


@pytest.mark.parametrize(
    "argv",
    [
        ["--data-dir", "/srv/at", "--log-level", "debug", "up"],
        ["up", "--data-dir", "/srv/at", "--log-level", "debug"],
        ["--log-level", "debug", "up", "--data-dir", "/srv/at"],
        ["up", "--port", "9000", "--data-dir", "/srv/at", "--log-level", "DEBUG"],
    ],
)
def test_global_options_are_taken_before_or_after_the_sub_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.command, args.data_dir, args.log_level) == ("up", Path("/srv/at"), "DEBUG")


def test_a_nested_sub_command_takes_them_too_and_the_later_one_wins() -> None:
    args = build_parser().parse_args(
        ["--data-dir", "/first", "quarantine", "list", "--data-dir", "/second"]
    )
    assert (args.action, args.data_dir, args.log_level) == ("list", Path("/second"), "INFO")


def test_without_them_the_defaults_hold() -> None:
    args = build_parser().parse_args(["worker"])
    assert (args.data_dir, args.log_level) == (None, "INFO")


@pytest.mark.parametrize("before", [True, False])
def test_the_data_dir_after_the_sub_command_is_the_one_used(
    before: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("AGENTTASKS_JWT_SECRET", raising=False)
    monkeypatch.delenv("AGENTTASKS_HOME", raising=False)
    secret = load_or_create_secrets(tmp_path).jwt_secret
    where = ["--data-dir", str(tmp_path)]
    argv = [*where, "token", "alice"] if before else ["token", "alice", *where]

    assert main(argv) == 0
    token = capsys.readouterr().out.strip()
    assert jwt.decode(token, secret, algorithms=["HS256"])["sub"] == "alice"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["up", "--log-level", "loud"], "argument --log-level: 'loud' is not one of DEBUG, INFO"),
        (["--log-level", "loud", "up"], "argument --log-level: 'loud' is not one of DEBUG, INFO"),
        (["up", "--data-dir"], "argument --data-dir: expected one argument"),
        (["up", "--data-directory", "x"], "unrecognized arguments: --data-directory x"),
    ],
)
def test_a_bad_global_option_is_a_clear_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert message in error
    assert "Traceback" not in error
