"""The price table: exact Decimal costs, the operator's file over the bundled genai-prices data."""

from __future__ import annotations

import socket
from decimal import Decimal
from importlib.metadata import version
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenttasks.application.price_file import PriceFile, parse_prices
from agenttasks.application.prices import ModelPrice, PriceTable, Rate, format_usd

counts = st.integers(min_value=0, max_value=10_000_000)
rates = st.decimals(min_value=0, max_value=10_000, places=6, allow_nan=False)


def flat(input_rate: Decimal, output_rate: Decimal, cached_rate: Decimal) -> ModelPrice:
    return ModelPrice("m", Rate(input_rate), Rate(output_rate), Rate(cached_rate), "test", "1")


@given(rates, rates, rates, counts, counts, counts, counts, counts, counts)
def test_a_flat_price_is_additive_and_never_negative(
    i: Decimal, o: Decimal, c: Decimal, p1: int, c1: int, k1: int, p2: int, c2: int, k2: int
) -> None:
    price = flat(i, o, c)
    k1, k2 = min(k1, p1), min(k2, p2)  # cached tokens are part of the prompt's
    one, two = price.cost(p1, c1, k1), price.cost(p2, c2, k2)
    assert one >= 0
    assert two >= 0
    assert price.cost(p1 + p2, c1 + c2, k1 + k2) == one + two
    assert price.ceiling(p1, c1) >= price.cost(p1, c1, k1) or c > i


def test_a_cost_is_exact_decimal_arithmetic() -> None:
    price = flat(Decimal("0.15"), Decimal("0.6"), Decimal("0.075"))
    # 3 calls of 1,000 prompt (400 cached) and 100 completion tokens: no float rounding.
    assert price.cost(1000, 100, 400) == Decimal("0.00018")
    assert sum(price.cost(1000, 100, 400) for _ in range(3)) == Decimal("0.00054")
    assert format_usd(price.cost(1000, 100, 400)) == "0.00018"
    assert format_usd(Decimal("1E+1")) == "10"
    assert format_usd(Decimal(0)) == "0"


def test_a_tier_applies_to_the_whole_call_past_its_start() -> None:
    rate = Rate(Decimal(1), ((200_000, Decimal(2)),))
    price = ModelPrice("m", rate, Rate(Decimal(4)), rate, "test", "1")
    assert price.cost(200_000, 0) == Decimal("0.2")
    assert price.cost(200_001, 0) == Decimal("0.400002")
    assert price.ceiling(10, 10) == (10 * 2 + 10 * 4) / Decimal(1_000_000)  # the highest tier


def test_the_operators_file_wins_over_the_bundle_and_names_itself() -> None:
    file = parse_prices(b'{"gpt-4o-mini": {"input_per_mtok": 1, "output_per_mtok": 2}}')
    table = PriceTable(PriceFile("p.json", file, "sha256:abc"))
    mine = table.price_for("gpt-4o-mini", "https://api.openai.com/v1")
    assert mine is not None
    assert (mine.source, mine.version, mine.input_per_mtok) == (
        "AGENTTASKS_PRICES",
        "sha256:abc",
        1,
    )
    assert mine.cached_input_per_mtok == 1  # no cached price: the input price


def test_the_bundled_table_knows_openai_models_without_the_network(monkeypatch: Any) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the price table tried to reach the network")

    # A download would have to open a socket: none may be opened while prices are looked up.
    monkeypatch.setattr(socket.socket, "connect", no_network)
    table = PriceTable(None)
    price = table.price_for("gpt-4o-mini-2024-07-18", "https://api.openai.com/v1")
    assert price is not None
    assert (price.source, price.version) == ("genai-prices", version("genai-prices"))
    assert price.input_per_mtok == Decimal("0.15")
    assert price.output_per_mtok == Decimal("0.6")
    assert price.cached_input_per_mtok == Decimal("0.075")
    # An unknown gateway still prices a known model by its name.
    via_gateway = table.price_for("gpt-4o-mini", "https://gateway.internal/")
    assert via_gateway is not None
    assert via_gateway.input == price.input


@pytest.mark.parametrize("model", ["fake-gpt", "my-own-llama", ""])
def test_a_model_nobody_prices_has_no_price(model: str) -> None:
    assert PriceTable(None).price_for(model, "https://127.0.0.1/") is None
