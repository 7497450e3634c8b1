"""The prompt templates (package data beside this module) and the refusal sentence, defined once.

Every template's placeholders are checked against `PLACEHOLDERS` when this module is imported: a template that
lost or gained a placeholder stops the app at start-up instead of sending the model a wrong prompt.
"""

from __future__ import annotations

import string
from importlib import resources

# template -> the placeholders its callers fill in (``{refusal}`` is always available)
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "system.md": frozenset({"max_sentences"}),
    "answer.md": frozenset({"sources", "evidence", "question", "length"}),
    "compare.md": frozenset({"sources", "evidence", "question", "methods"}),
    "source.md": frozenset({"n", "title", "details"}),
    "rewrite.md": frozenset({"history", "question"}),
    "plan.md": frozenset({"history", "question"}),
    "refusal.txt": frozenset(),
}


class PromptError(RuntimeError):
    """A template is missing or its placeholders are not the ones its callers fill in."""


def placeholders(text: str) -> set[str]:
    """The ``{name}`` fields of a template (``{{`` and ``}}`` are literal braces)."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise PromptError(f"malformed braces: {exc}") from None


def load_templates(root=None) -> dict[str, str]:
    """Every template of ``PLACEHOLDERS`` read from ``root`` (default: this package's data, through
    importlib.resources, so an installed wheel finds them), each checked; PromptError says which and why."""
    out = {}
    root = root if root is not None else resources.files(__name__)
    for name, expected in PLACEHOLDERS.items():
        try:
            text = root.joinpath(name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PromptError(f"prompt template {name} is missing: {exc}") from None
        try:
            found = placeholders(text) - {"refusal"}
        except PromptError as exc:
            raise PromptError(f"prompt template {name}: {exc}") from None
        if found != expected:
            missing, extra = sorted(expected - found), sorted(found - expected)
            raise PromptError(
                f"prompt template {name}: "
                + "; ".join(
                    part
                    for part in (
                        f"missing placeholder(s) {', '.join(missing)}" if missing else "",
                        f"unknown placeholder(s) {', '.join(extra)}" if extra else "",
                    )
                    if part
                )
            )
        out[name] = text
    return out


TEMPLATES = load_templates()
REFUSAL = TEMPLATES["refusal.txt"]


def template(name: str) -> str:
    """The text of one template (e.g. 'system.md')."""
    return TEMPLATES[name]


def render(name: str, **values: object) -> str:
    """A template filled in; exactly its declared placeholders must be given."""
    given = set(values)
    if given != PLACEHOLDERS[name]:
        raise PromptError(f"render({name!r}) got {sorted(given)}, the template takes {sorted(PLACEHOLDERS[name])}")
    return TEMPLATES[name].format(refusal=REFUSAL, **values)
