"""The system-wide metric families built from the metrics read model's figures (pure)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from agenttasks.domain.rules import STATUSES, TASK_TYPES
from agenttasks.projections.metrics_fold import QUEUE_WAIT_BUCKETS, RUN_BUCKETS

MODELS_SHOWN = 20  # model series per family; the rest are summed as `other`
Figures = dict[tuple[str, str, str], int]  # (metric, task_type, label) -> value
_COUNTERS = {
    "created": ("agenttasks_tasks_created", "Tasks created"),
    "completed": ("agenttasks_tasks_completed", "Tasks completed"),
    "cancelled": ("agenttasks_tasks_cancelled", "Tasks cancelled"),
    "retried": ("agenttasks_tasks_retried", "Retries (by hand or automatic)"),
}


def task_families(figures: Figures) -> Iterator[Metric]:
    """The task counters, the status gauge and the histograms from the read model's figures."""
    types = sorted({*TASK_TYPES, *(t for _, t, _ in figures)})

    def value(metric: str, task_type: str, label: str = "") -> int:
        return figures.get((metric, task_type, label), 0)

    for metric, (name, documentation) in _COUNTERS.items():
        counter = CounterMetricFamily(name, documentation, labels=["task_type"])
        for task_type in types:
            counter.add_metric([task_type], value(metric, task_type))
        yield counter
    failed = CounterMetricFamily(
        "agenttasks_tasks_failed",
        "Attempts that failed, by error kind",
        labels=["task_type", "error_kind"],
    )
    for (metric, task_type, label), count in sorted(figures.items()):
        if metric == "failed":
            failed.add_metric([task_type, label], count)
    yield failed
    tokens = CounterMetricFamily(
        "agenttasks_task_tokens",
        "Tokens the completed tasks' results reported (result_data.usage)",
        labels=["task_type", "kind"],
    )
    for task_type in types:
        tokens.add_metric([task_type, "prompt"], value("prompt_tokens", task_type))
        tokens.add_metric([task_type, "completion"], value("completion_tokens", task_type))
    yield tokens
    yield from model_families(figures)
    statuses = GaugeMetricFamily(
        "agenttasks_tasks", "Tasks in the store, by status", labels=["task_type", "status"]
    )
    for task_type in types:
        for status in sorted({*STATUSES, *(s for m, t, s in figures if m == "status")}):
            statuses.add_metric([task_type, status], value("status", task_type, status))
    yield statuses
    for name, metric, bounds, documentation in (
        (
            "agenttasks_task_queue_wait_seconds",
            "wait",
            QUEUE_WAIT_BUCKETS,
            "From created (or retried, after any backoff) to started",
        ),
        ("agenttasks_task_run_seconds", "run", RUN_BUCKETS, "From started to completed or failed"),
    ):
        histogram = HistogramMetricFamily(name, documentation, labels=["task_type"])
        for task_type in types:
            cumulative, buckets = 0, []
            for index, bound in enumerate((*bounds, float("inf"))):
                cumulative += value(f"{metric}_bucket", task_type, str(index))
                buckets.append((floatToGoString(bound), float(cumulative)))  # type: ignore[no-untyped-call]
            total = value(f"{metric}_sum_us", task_type) / 1_000_000
            histogram.add_metric([task_type], buckets, sum_value=total)
        yield histogram


def model_families(figures: Figures, top: int = MODELS_SHOWN) -> Iterator[Metric]:
    """Model calls, tokens and cost by model (Task.ModelCalled); beyond the top models, `other`."""
    sums: dict[str, dict[tuple[str, str], int]] = {}  # metric -> (model, task_type) -> value
    for (metric, task_type, model), count in figures.items():
        if metric.startswith("model_"):
            sums.setdefault(metric, {})[(model, task_type)] = count
    weight: dict[str, int] = {}
    for metric in ("model_prompt_tokens", "model_completion_tokens", "model_calls"):
        for (model, _), count in sums.get(metric, {}).items():
            weight[model] = weight.get(model, 0) + count
    shown = set(sorted(weight, key=lambda m: (-weight[m], m))[:top])

    def folded(metric: str) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for (model, task_type), count in sums.get(metric, {}).items():
            key = (model if model in shown else "other", task_type)
            out[key] = out.get(key, 0) + count
        return out

    calls = CounterMetricFamily(
        "agenttasks_model_calls",
        "Model calls recorded (Task.ModelCalled)",
        labels=["model", "task_type"],
    )
    unpriced = CounterMetricFamily(
        "agenttasks_model_unpriced_calls",
        "Model calls whose price was unknown",
        labels=["model", "task_type"],
    )
    tokens = CounterMetricFamily(
        "agenttasks_model_tokens",
        "Tokens of the recorded model calls",
        labels=["model", "task_type", "kind"],
    )
    cost = CounterMetricFamily(
        "agenttasks_model_cost_usd", "USD of the priced model calls", labels=["model", "task_type"]
    )
    for (model, task_type), count in sorted(folded("model_calls").items()):
        calls.add_metric([model, task_type], count)
    for (model, task_type), count in sorted(folded("model_unpriced_calls").items()):
        unpriced.add_metric([model, task_type], count)
    for kind in ("prompt", "completion"):
        for (model, task_type), count in sorted(folded(f"model_{kind}_tokens").items()):
            tokens.add_metric([model, task_type, kind], count)
    for (model, task_type), nano in sorted(folded("model_cost_nano_usd").items()):
        cost.add_metric([model, task_type], nano / 1e9)
    yield from (calls, unpriced, tokens, cost)
