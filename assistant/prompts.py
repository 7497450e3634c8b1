"""Prompt templates live as files in prompts/; this module loads them. The refusal phrase is defined once here."""

from __future__ import annotations

from functools import cache

from .config import PROMPTS_DIR


@cache
def template(name: str) -> str:
    """The text of prompts/<name> (e.g. 'system.md')."""
    return (PROMPTS_DIR / name).read_text(encoding="utf-8").strip()


REFUSAL = template("refusal.txt")


def render(name: str, **values: object) -> str:
    return template(name).format(refusal=REFUSAL, **values)
