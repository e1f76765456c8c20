"""docs/operations.md is the operator's manual: its "Settings reference" names every variable
the code reads (settings.py's AGENTTASKS_*, OPENAI_* and OTEL_*, and nats.conf's passwords)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from agenttasks.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "src" / "agenttasks" / "settings.py"
NATS_CONF = ROOT / "nats.conf"
MANUAL = ROOT / "docs" / "operations.md"
PREFIXES = ("AGENTTASKS_", "OPENAI_", "OTEL_")


class Asked(Mapping[str, str]):
    """An empty environment that notes every name Settings.from_env asks for."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.names.add(key)
        raise KeyError(key)

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.names.add(key)
        return default

    def __contains__(self, key: object) -> bool:
        self.names.add(str(key))
        return False

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("from_env must ask for names, not list the environment")

    def __len__(self) -> int:
        return 0


def read_by_settings() -> set[str]:
    asked = Asked()
    Settings.from_env(asked)
    # Names asked for (f-strings included) and names written out (one read only on some path).
    written = set(
        re.findall(r"\b(?:AGENTTASKS|OPENAI|OTEL)_[A-Z0-9_]*[A-Z0-9]\b", SETTINGS.read_text())
    )
    return {n for n in asked.names | written if n.startswith(PREFIXES)}


def reference() -> str:
    text = MANUAL.read_text()
    start = text.index("\n## Settings reference\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def named(name: str, text: str) -> bool:
    return re.search(rf"(?<![A-Z0-9_]){re.escape(name)}(?![A-Z0-9_])", text) is not None


def test_the_reference_names_every_variable_settings_reads() -> None:
    names = read_by_settings()
    assert len(names) > 70, sorted(names)  # the recording works (about 80 today)
    assert "AGENTTASKS_NATS_RELAY_URL" in names  # built with an f-string per NATS user
    section = reference()
    missing = sorted(n for n in names if not named(n, section))
    assert missing == [], f"add these to docs/operations.md, Settings reference: {missing}"


def test_the_reference_names_every_password_nats_conf_reads() -> None:
    passwords = set(re.findall(r"\$(AGENTTASKS_NATS_[A-Z]+_PASSWORD)", NATS_CONF.read_text()))
    assert len(passwords) >= 6
    section = reference()
    assert sorted(p for p in passwords if not named(p, section)) == []


def test_a_name_only_mentioned_in_passing_is_not_enough() -> None:
    # The check reads whole names: a longer name that contains a shorter one does not count.
    assert not named("AGENTTASKS_PORT", "`AGENTTASKS_PORTS` and AGENTTASKS_METRICS_PORT")
    assert named("AGENTTASKS_PORT", "| `AGENTTASKS_PORT` | 8000 |")
