"""What the engine tells the HTTP layer and the metrics about itself (its own module: both read it, and the
engine writes the metrics)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EngineStatus:
    """What the HTTP layer and the metrics may know about the engine (nothing reaches through it)."""

    ready: bool
    error: str | None = None
    model: str | None = None
    model_role: str | None = None
    model_choice: str | None = None
    variant: str | None = None
    model_created_at: str = ""
    providers: list[str] = field(default_factory=list)
    store: str = ""
    index_size: int | None = None
    languages: list[str] = field(default_factory=list)
    group_fields: list[str] = field(default_factory=list)
    writable: bool = False
    snapshot_error: str | None = None
    snapshot_failures: int = 0
    recovered_from: str | None = None
    search_index: str = ""
    queue_depth: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
