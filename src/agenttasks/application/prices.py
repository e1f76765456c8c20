"""What a model call costs: the operator's price file over the table bundled with genai-prices.

The bundled table is the data module of the `genai-prices` package (pinned in pyproject.toml):
read from the installed package, never downloaded (its UpdatePrices fetcher is never started).
A model found in neither has no price: its calls are recorded with cost null, never 0.
All arithmetic is Decimal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib.metadata import version as package_version
from typing import TYPE_CHECKING, Any

from agenttasks.application.price_file import FlatPrice, PriceFile

if TYPE_CHECKING:
    from agenttasks.settings import Settings

MILLION = Decimal(1_000_000)
FILE_SOURCE = "AGENTTASKS_PRICES"
BUNDLED_SOURCE = "genai-prices"


@dataclass(frozen=True)
class Rate:
    """USD per million tokens; past a tier's start (input tokens of the call) its price applies."""

    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...] = ()

    def at(self, input_tokens: int) -> Decimal:
        """The price for a call of `input_tokens` input tokens (the whole call pays the tier)."""
        for start, price in reversed(self.tiers):
            if input_tokens > start:
                return price
        return self.base

    @property
    def highest(self) -> Decimal:
        """The most this rate can charge (what a reservation assumes)."""
        return max([self.base, *(price for _, price in self.tiers)])


@dataclass(frozen=True)
class ModelPrice:
    """The prices of one model, and where they come from."""

    model: str
    input: Rate
    output: Rate
    cached_input: Rate
    source: str
    version: str

    @property
    def input_per_mtok(self) -> Decimal:
        return self.input.base

    @property
    def output_per_mtok(self) -> Decimal:
        return self.output.base

    @property
    def cached_input_per_mtok(self) -> Decimal:
        return self.cached_input.base

    def cost(self, prompt: int, completion: int, cached: int = 0) -> Decimal:
        """USD for one call; `prompt` includes the `cached` prompt tokens, as OpenAI counts."""
        cached = min(max(cached, 0), max(prompt, 0))
        uncached = max(prompt, 0) - cached
        total = (
            uncached * self.input.at(prompt)
            + cached * self.cached_input.at(prompt)
            + max(completion, 0) * self.output.at(prompt)
        )
        return total / MILLION

    def ceiling(self, prompt: int, max_tokens: int) -> Decimal:
        """The most a call of `prompt` tokens and at most `max_tokens` of output can cost."""
        total = max(prompt, 0) * self.input.highest + max(max_tokens, 0) * self.output.highest
        return total / MILLION


def format_usd(amount: Decimal) -> str:
    """An amount as stored in events and shown by the API: plain digits, no exponent."""
    text = format(amount.normalize(), "f")
    return "0" if text in ("-0", "") else text


class PriceTable:
    """Looks up a model's price: the operator's file first, then the bundled table."""

    def __init__(self, file: PriceFile | None, *, bundled: bool = True) -> None:
        self._file = file
        self._bundled = bundled
        self._bundled_version = package_version("genai-prices") if bundled else ""

    @classmethod
    def from_settings(cls, settings: Settings) -> PriceTable:
        """The table of AGENTTASKS_PRICES (checked at start-up) over the bundled one."""
        return cls(settings.prices)

    @property
    def bundled_version(self) -> str:
        return self._bundled_version

    def load(self) -> None:
        """Imports the bundled data now (about 0.4 s), so no model call waits for it."""
        if self._bundled:
            from genai_prices import data_snapshot

            data_snapshot.get_snapshot()

    def price_for(
        self, model: str, provider_url: str | None = None, at: datetime | None = None
    ) -> ModelPrice | None:
        """The price of `model` at `provider_url` (None: the model name alone), or None."""
        if self._file is not None and (flat := self._file.prices.get(model)) is not None:
            return _from_file(model, flat, self._file.version)
        if not self._bundled:
            return None
        return self._from_bundle(model, provider_url, at or datetime.now(UTC))

    def _from_bundle(self, model: str, provider_url: str | None, at: datetime) -> ModelPrice | None:
        found = _bundled_model(model, provider_url)
        if found is None:
            return None
        prices = found.get_prices(at)
        input_rate = _rate(getattr(prices, "input_mtok", None))
        output_rate = _rate(getattr(prices, "output_mtok", None))
        if input_rate is None or output_rate is None:  # priced per request, image, ...: not ours
            return None
        cached = _rate(getattr(prices, "cache_read_mtok", None)) or input_rate
        return ModelPrice(
            model, input_rate, output_rate, cached, BUNDLED_SOURCE, self._bundled_version
        )


def _from_file(model: str, flat: FlatPrice, version: str) -> ModelPrice:
    cached = flat.cached_input_per_mtok
    return ModelPrice(
        model,
        Rate(flat.input_per_mtok),
        Rate(flat.output_per_mtok),
        Rate(flat.input_per_mtok if cached is None else cached),
        FILE_SOURCE,
        version,
    )


def _bundled_model(model: str, provider_url: str | None) -> Any:
    """genai-prices' model info, by provider URL and name, else by name alone; or None."""
    from genai_prices import data_snapshot  # 30k lines of data: loaded on the first lookup

    snapshot = data_snapshot.get_snapshot()
    # A base URL genai-prices does not know (a proxy, a gateway) may still serve a known model:
    # then the model name alone decides, as it would for the provider that serves it.
    for url in (provider_url, None) if provider_url else (None,):
        try:
            _, info = snapshot.find_provider_model(model, None, None, url)
        except LookupError:
            continue
        return info
    return None


def _rate(price: Any) -> Rate | None:
    if price is None:
        return None
    if isinstance(price, Decimal):
        return Rate(price)
    base, tiers = getattr(price, "base", None), getattr(price, "tiers", None)
    if not isinstance(base, Decimal) or tiers is None:
        return None
    return Rate(base, tuple(sorted((int(t.start), Decimal(t.price)) for t in tiers)))
