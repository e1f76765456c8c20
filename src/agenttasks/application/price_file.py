"""The operator's price file (AGENTTASKS_PRICES), read and checked strictly at start-up.

Shape: `{"MODEL": {"input_per_mtok": USD, "output_per_mtok": USD, "cached_input_per_mtok": USD}}`
(USD per million tokens; the cached price is optional). Numbers are read as Decimal, never as
floats, so "0.15" costs exactly 0.15. Anything else (an unknown key, a string for a number,
NaN, a duplicate model, a file too large) is refused with a message naming the problem, not
the JSON library's text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 1024 * 1024  # thousands of models fit; a runaway file does not
MAX_MODELS = 10_000
MAX_MODEL_CHARS = 200
# No model costs anything near this per million tokens: a larger figure is a typo (cents for
# dollars, tokens for millions) that would make every budget meaningless.
MAX_USD_PER_MTOK = Decimal(10_000)
# 1e-999990 is 9 characters: its calls' costs would be stored as a million digits, and the
# budget guard's arithmetic would overflow. A nano-dollar per million tokens is fine enough.
MAX_DECIMAL_PLACES = 9
REQUIRED = ("input_per_mtok", "output_per_mtok")
OPTIONAL = ("cached_input_per_mtok",)


class PriceFileError(ValueError):
    """The price file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class FlatPrice:
    """One model's prices from the file, USD per million tokens."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None


@dataclass(frozen=True)
class PriceFile:
    """The checked content of the file and its version (a digest of its bytes)."""

    path: str
    prices: Mapping[str, FlatPrice]
    version: str


def read_price_file(path: str | Path) -> PriceFile:
    """The file at `path`, checked; PriceFileError when it is not a usable price table."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise PriceFileError(f"cannot read {file}: {error.strerror or 'unreadable'}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise PriceFileError(f"{file} is larger than {MAX_FILE_BYTES:,} bytes")
    return PriceFile(str(file), parse_prices(raw), "sha256:" + hashlib.sha256(raw).hexdigest()[:12])


def parse_prices(raw: bytes) -> dict[str, FlatPrice]:
    """The models and prices of a price file's bytes, checked."""
    try:
        text = raw.decode("utf-8")
        document = json.loads(
            text,
            parse_float=_decimal,
            parse_int=_decimal,
            parse_constant=_no_constant,
            object_pairs_hook=_unique,
        )
    except UnicodeDecodeError:
        raise PriceFileError("the file is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise PriceFileError(f"not JSON (line {error.lineno}, column {error.colno})") from None
    except RecursionError:
        raise PriceFileError("the JSON is nested too deeply") from None
    if not isinstance(document, dict):
        raise PriceFileError('the file must be a JSON object {"MODEL": {...}, ...}')
    if len(document) > MAX_MODELS:
        raise PriceFileError(f"{len(document):,} models; at most {MAX_MODELS:,}")
    return {_model_name(name): _price(name, entry) for name, entry in document.items()}


def _model_name(name: str) -> str:
    if not name.strip() or len(name) > MAX_MODEL_CHARS:
        raise PriceFileError(f"a model name must be 1 to {MAX_MODEL_CHARS} characters")
    if any(not ch.isprintable() for ch in name):
        raise PriceFileError(f"the model name {name[:40]!r} contains control characters")
    return name


def _price(name: str, entry: Any) -> FlatPrice:
    where = f"model {name[:60]!r}"
    if not isinstance(entry, dict):
        raise PriceFileError(f"{where}: the prices must be an object")
    unknown = sorted(set(entry) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        allowed = ", ".join(REQUIRED + OPTIONAL)
        raise PriceFileError(f"{where}: unknown key {unknown[0][:40]!r} (allowed: {allowed})")
    missing = [key for key in REQUIRED if key not in entry]
    if missing:
        raise PriceFileError(f"{where}: {missing[0]} is missing")
    values = {key: _usd(where, key, value) for key, value in entry.items()}
    return FlatPrice(**values)


def _usd(where: str, key: str, value: Any) -> Decimal:
    if not isinstance(value, Decimal):
        raise PriceFileError(f"{where}: {key} must be a number of USD per million tokens")
    if not value.is_finite() or value < 0 or value > MAX_USD_PER_MTOK:
        raise PriceFileError(f"{where}: {key} must be between 0 and {MAX_USD_PER_MTOK} USD")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_DECIMAL_PLACES:
        raise PriceFileError(f"{where}: {key} has more than {MAX_DECIMAL_PLACES} decimal places")
    return value


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - json hands over only valid number text
        raise PriceFileError(f"{text[:40]!r} is not a number") from None
    if len(text) > 40:  # 1e999999999 would make every later sum crawl
        raise PriceFileError(f"the number {text[:20]}... is longer than 40 characters")
    return value


def _no_constant(name: str) -> Decimal:
    raise PriceFileError(f"{name} is not a price")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise PriceFileError(f"{key[:60]!r} appears twice")
        seen[key] = value
    return seen
