"""Per-type task configurations: the shape of `task_config`, checked before anything is stored.

Each task type has one msgspec Struct. Unknown fields are refused, sizes are capped, and every
error names the field that caused it, so the API can put the message beside the form field.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

MAX_CONFIG_BYTES = 256 * 1024
MAX_URLS = 20
MAX_QUESTIONS = 20
MAX_STEPS = 50
MAX_KEYWORDS = 30
MAX_SERIES = 50
MAX_POINTS = 100_000
MAX_TEXT_CHARS = 200_000
MAX_REFERENCES = 100  # `{{previous}}` / `{{steps.N}}` in one chain: each may copy a whole page
MAX_TOKENS_ASKED = 128_000  # a config's max_tokens; the worker caps it at AGENTTASKS_MAX_TOKENS
# Per-task caps (docs/cost.md, "Budgets"): the worker also applies AGENTTASKS_MAX_TASK_COST.
MAX_COST_ASKED = Decimal(1_000_000)  # USD
MAX_COST_DECIMALS = 6
MAX_COST_CHARS = 32  # a max_cost given as a string: no 5,000-digit numbers to parse
MAX_TOTAL_TOKENS_ASKED = 1_000_000_000
# A custom task's free `custom_config` goes into every model step's prompt: kept small.
MAX_CUSTOM_CONFIG_BYTES = 16 * 1024

# How a custom step names an earlier step's output or the task's custom_config (the worker
# fills them in, workers/agents/custom.py).
STEP_REFERENCE = re.compile(r"\{\{\s*(previous|custom_config|steps\.(\d+))\s*\}\}")

Url = Annotated[str, Meta(min_length=1, max_length=2048, pattern=r"^https?://\S+$")]
ShortText = Annotated[str, Meta(min_length=1, max_length=500)]
LongText = Annotated[str, Meta(max_length=MAX_TEXT_CHARS)]
Words = Annotated[int, Meta(ge=10, le=20_000)]


class Config(Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every task configuration: unknown fields are an error, not silently dropped."""

    # Fewer output tokens per model call than the type's default; never more than the cap.
    max_tokens: Annotated[int, Meta(ge=1, le=MAX_TOKENS_ASKED)] | None = None
    # The most the task may spend, in USD (a decimal string such as "0.50", or a number), and
    # the most tokens (prompt + completion) over all its model calls. Checked in parse_config.
    max_cost: Annotated[str, Meta(max_length=MAX_COST_CHARS)] | int | float | None = None
    max_total_tokens: Annotated[int, Meta(ge=1, le=MAX_TOTAL_TOKENS_ASKED)] | None = None


class SummaryConfig(Config):
    content: LongText | None = None
    urls: Annotated[list[Url], Meta(max_length=MAX_URLS)] = []
    max_length: Words = 200

    def __post_init__(self) -> None:
        if not (self.content and self.content.strip()) and not self.urls:
            raise ValueError("task_config needs `content` or `urls` (at least one)")


class ResearchConfig(Config):
    topic: ShortText
    urls: Annotated[list[Url], Meta(max_length=MAX_URLS)] = []
    questions: Annotated[list[ShortText], Meta(max_length=MAX_QUESTIONS)] = []
    content: LongText | None = None


ContentType = Literal[
    "blog_post", "article", "report", "social_post", "email", "newsletter", "product_description"
]
Tone = Literal["professional", "casual", "friendly", "formal", "persuasive", "informative"]


class ContentGenerationConfig(Config):
    topic: ShortText
    content_type: ContentType = "article"
    length: Words = 500
    tone: Tone = "professional"
    keywords: Annotated[
        list[Annotated[str, Meta(min_length=1, max_length=100)]], Meta(max_length=MAX_KEYWORDS)
    ] = []


Number = int | float
Series = Annotated[list[Number], Meta(min_length=1, max_length=MAX_POINTS)]
Record = dict[str, Number | str | None]
AnalysisType = Literal["statistical", "trend", "correlation", "distribution"]


class DataAnalysisConfig(Config):
    """`data` is either named numeric series ({"sales": [1, 2]}) or a list of records."""

    data: dict[str, Series] | Annotated[list[Record], Meta(min_length=1, max_length=MAX_POINTS)]
    analysis_type: AnalysisType = "statistical"

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            if not self.data:
                raise ValueError("task_config.data needs at least one named series")
            if len(self.data) > MAX_SERIES:
                raise ValueError(f"task_config.data holds at most {MAX_SERIES} series")
        elif not any(
            isinstance(v, int | float) and not isinstance(v, bool)
            for record in self.data
            for v in record.values()
        ):
            raise ValueError("task_config.data: the records hold no numeric field")


StepAction = Literal["fetch", "extract", "summarize", "analyze", "generate", "prompt"]


class ActionStep(Config, omit_defaults=True):
    """One step of a custom chain. `input` may name an earlier step's output as `{{steps.N}}`."""

    action: StepAction
    name: Annotated[str, Meta(max_length=100)] | None = None
    url: Url | None = None
    input: LongText | None = None
    instruction: Annotated[str, Meta(max_length=10_000)] | None = None
    max_length: Words | None = None
    data: dict[str, Series] | None = None


Step = Annotated[str, Meta(min_length=1, max_length=10_000)] | ActionStep


class CustomConfig(Config):
    steps: Annotated[list[Step], Meta(min_length=1, max_length=MAX_STEPS)]
    # Free JSON (the guide's example gives a string) handed to the steps; None: not given.
    custom_config: Any = None

    def __post_init__(self) -> None:
        if self.custom_config is not None:
            size = len(msgspec.json.encode(self.custom_config))
            if size > MAX_CUSTOM_CONFIG_BYTES:
                raise ValueError(
                    f"task_config.custom_config is {size} bytes as JSON; "
                    f"the limit is {MAX_CUSTOM_CONFIG_BYTES}"
                )
        references = 0
        for number, step in enumerate(self.steps, 1):
            texts = [step] if isinstance(step, str) else [step.input or "", step.instruction or ""]
            for text in texts:
                for found in STEP_REFERENCE.finditer(text):
                    references += 1
                    if found.group(2) is not None and not 1 <= int(found.group(2)) < number:
                        raise ValueError(
                            f"task_config.steps[{number - 1}]: {found.group(0)} does not name "
                            f"a step before step {number}"
                        )
        if references > MAX_REFERENCES:
            raise ValueError(
                f"task_config.steps use {references} references to earlier steps; "
                f"a chain may use at most {MAX_REFERENCES}"
            )


TaskType = Literal["summary", "research", "content_generation", "data_analysis", "custom"]

CONFIG_TYPES: dict[str, type[Config]] = {
    "summary": SummaryConfig,
    "research": ResearchConfig,
    "content_generation": ContentGenerationConfig,
    "data_analysis": DataAnalysisConfig,
    "custom": CustomConfig,
}


class ConfigError(ValueError):
    """A task configuration that does not fit its type; `errors` are messages a person can read."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def parse_config(task_type: str, task_config: Any) -> Config:
    """Checks `task_config` against its type's rules and returns the typed configuration."""
    config_type = CONFIG_TYPES.get(task_type)
    if config_type is None:
        raise ConfigError([f"unknown task_type {task_type!r}; one of: {', '.join(CONFIG_TYPES)}"])
    if not isinstance(task_config, dict):
        raise ConfigError(["task_config must be a JSON object"])
    encoded = msgspec.json.encode(task_config)
    if len(encoded) > MAX_CONFIG_BYTES:
        raise ConfigError([f"task_config is {len(encoded)} bytes; the limit is {MAX_CONFIG_BYTES}"])
    if contains_nul(task_config):
        raise ConfigError(["task_config must not contain NUL characters (\\u0000)"])
    try:
        parsed = msgspec.json.decode(encoded, type=config_type)
    except msgspec.ValidationError as error:
        raise ConfigError([_readable(str(error))]) from None
    if parsed.max_cost is not None:
        cost_of(parsed.max_cost)  # raises ConfigError naming the field
    return parsed


def cost_of(value: Any) -> Decimal:
    """A config's `max_cost` as Decimal USD; ConfigError (naming the field, not the value)."""
    refused = ConfigError(
        [
            f"task_config.max_cost must be a number of US dollars above 0 and at most "
            f"{MAX_COST_ASKED}, with at most {MAX_COST_DECIMALS} decimal places "
            f'(a string such as "0.50", or a number)'
        ]
    )
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise refused
    if isinstance(value, str) and (len(value) > MAX_COST_CHARS or not _DECIMAL.match(value)):
        raise refused
    try:
        # repr of a float is its shortest round-trip form: 0.1 is 0.1, not 0.1000000000000000055
        cost = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except (InvalidOperation, ValueError):
        raise refused from None
    if not cost.is_finite() or not 0 < cost <= MAX_COST_ASKED:
        raise refused
    exponent = cost.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_COST_DECIMALS:
        raise refused
    return cost


# ASCII digits only: Python's \d (and Decimal) would read Arabic-Indic or fullwidth digits too.
_DECIMAL = re.compile(r"^\s*[0-9]{1,7}(\.[0-9]{1,6})?\s*$")


def normalized_config(task_type: str, task_config: Any) -> dict[str, Any]:
    """The configuration as stored: validated, with every default filled in."""
    parsed = parse_config(task_type, task_config)
    result: dict[str, Any] = msgspec.to_builtins(parsed)
    # Stored configs stay as they were: the optional fields not given are left out.
    for optional in ("max_tokens", "custom_config", "max_cost", "max_total_tokens"):
        if result.get(optional) is None:
            result.pop(optional, None)
    return result


def contains_nul(value: Any) -> bool:
    """Whether a JSON value holds a NUL character anywhere (Postgres text cannot store one)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(item) for item in value)
    return False


def _readable(message: str) -> str:
    # msgspec says "Object contains unknown field `x` - at `$.steps[0]`"; the path is
    # relative to task_config, which is what a form shows beside its fields.
    return message.replace("`$", "`task_config").replace("Object contains", "task_config has")
