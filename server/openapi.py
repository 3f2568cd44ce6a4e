"""The published schema states the limits in force: the ceilings in server/schemas.py
tightened to this server's settings, so clients and fuzzers see what will be accepted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medkb.settings import Settings
from server.queries import most_k


def _limit(node: dict[str, Any], key: str, value: int) -> None:
    """Lower `key` (maxLength, maximum, maxItems) in `node`, or in the branch of an anyOf that has it."""
    for branch in [node, *node.get("anyOf", [])]:
        if key in branch:
            branch[key] = min(branch[key], value)


def _at_most(node: dict[str, Any], value: int) -> None:
    """Set `maximum` on the integer branch of `node` (or on `node` when it has no anyOf)."""
    for branch in [b for b in node.get("anyOf", []) if b.get("type") == "integer"] or [node]:
        branch["maximum"] = min(branch.get("maximum", value), value)


def tighten(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    ask = schema.get("components", {}).get("schemas", {}).get("AskIn", {}).get("properties", {})
    if "question" in ask:
        _limit(ask["question"], "maxLength", settings.max_query_chars)
    if "k" in ask:
        _at_most(ask["k"], most_k(settings))
    if "history" in ask:
        _limit(ask["history"], "maxItems", settings.conversation_turns)
        for branch in [ask["history"], *ask["history"].get("anyOf", [])]:
            if "items" in branch:
                _limit(branch["items"], "maxLength", settings.max_query_chars)
    feedback = schema.get("components", {}).get("schemas", {}).get("FeedbackIn", {}).get("properties", {})
    if "comment" in feedback:
        _limit(feedback["comment"], "maxLength", settings.feedback_comment_chars)
    for path in ("/api/search", "/"):
        for parameter in schema.get("paths", {}).get(path, {}).get("get", {}).get("parameters", []):
            if parameter.get("name") == "q":
                _limit(parameter["schema"], "maxLength", settings.max_query_chars)
            elif parameter.get("name") == "k":
                _at_most(parameter["schema"], most_k(settings))
    return schema


def install(app, settings: Settings) -> None:
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = tighten(generate(), settings)
        return app.openapi_schema

    app.openapi = openapi
