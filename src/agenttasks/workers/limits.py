"""The caps on what one task can multiply: model output, prompt size, text moved along a chain.

Each cap comes from a Settings field (an AGENTTASKS_* variable); going over one fails the task
with `input_too_large` and a message naming the variable, never the worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from agenttasks.settings import Settings
from agenttasks.workers.errors import AgentError

INPUT_TOO_LARGE = "input_too_large"


@dataclass(frozen=True)
class Limits:
    """The worker's caps, as the composition root read them from Settings."""

    max_tokens: int
    max_prompt_chars: int
    max_step_text_chars: int
    max_chain_text_chars: int
    max_step_output_chars: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The caps of `settings` (`Limits.from_settings(Settings())` gives the defaults)."""
        return settings.caps(cls)

    def tokens_for(self, wanted: int, asked: int | None) -> int:
        """A call's max_tokens: what the task config asked (or the agent's default), capped."""
        return max(1, min(asked if asked is not None else wanted, self.max_tokens))

    def check_prompt(self, system: str, prompt: str) -> None:
        """Refuses a model call whose text is over AGENTTASKS_MAX_PROMPT_CHARS."""
        size = len(system) + len(prompt)
        if size > self.max_prompt_chars:
            raise too_large(
                f"a model prompt of {size:,} characters", self.max_prompt_chars, "MAX_PROMPT_CHARS"
            )


def too_large(what: str, cap: int, variable: str) -> AgentError:
    """The error of a task over one cap: what went over, the cap, and the setting to raise."""
    return AgentError(
        INPUT_TOO_LARGE,
        f"{what} is over the limit of {cap:,} (AGENTTASKS_{variable})",
    )
