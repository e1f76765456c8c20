"""Stored events that cannot be decoded: a marker in their place, so readers go on.

An event stored by a buggy encoder (or before a fix) may never decode again. Readers of the log
must not stop at it: `decoded` returns an `Undecodable` marker instead, which carries the ids,
the stored topic and our account of the failure, and never the stored state (user content).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent

from agenttasks.quarantine import describe

# What an undecodable event's time is when even its raw timestamp cannot be read.
UNKNOWN_TIME = datetime.fromtimestamp(0, UTC)


@dataclass(frozen=True)
class Undecodable:
    """In place of a stored event that does not decode."""

    originator_id: UUID | str
    originator_version: int
    topic: str
    error: str  # exception type names (quarantine.describe), never the stored content
    timestamp: datetime


def decoded(mapper: Mapper[Any], stored: StoredEvent) -> DomainEventProtocol[Any]:
    """The domain event `stored` holds, or an `Undecodable` marker when it cannot be decoded."""
    try:
        return mapper.to_domain_event(stored)
    except Exception as error:  # decoding is pure: any failure is a property of the bytes
        return Undecodable(
            stored.originator_id,
            stored.originator_version,
            stored.topic,
            describe(error),
            _raw_timestamp(stored.state),
        )


def _raw_timestamp(state: bytes) -> datetime:
    # The envelope's own timestamp, read as plain JSON, without the transcoder that failed.
    try:
        stamp = msgspec.json.decode(state).get("timestamp")
        return datetime.fromisoformat(stamp["_data_"])
    except Exception:  # compressed, encrypted or not JSON at all: the time is unknown
        return UNKNOWN_TIME
