"""The LLM's failures, one class per thing a caller reacts to; ``str(e)`` is a one-line, key-free explanation.

Kept apart from `llm` (the client) and `llm_server` (the embedded server) so that both raise them without
importing each other."""

from __future__ import annotations

from pathlib import Path


class LLMError(RuntimeError):
    """Base of every LLM failure; ``str(e)`` is a one-line, key-free explanation."""


class LLMUnavailable(LLMError):
    """No answer: connection refused, server died, or timed out."""


class LLMAuthError(LLMError):
    """The endpoint rejected the API key."""


class LLMModelNotFound(LLMError):
    """The endpoint does not serve the requested model."""


class LLMServerError(LLMError):
    """The endpoint failed (HTTP 5xx)."""


class LLMStartError(LLMUnavailable):
    """The embedded server could not be started; ``reason`` is a short code, ``log_tail`` the log's end."""

    def __init__(self, message: str, reason: str = "exited", log_tail: str = "", log_path: Path | None = None):
        full = message
        if log_path is not None:
            full += f"\nserver log: {log_path}"
        if log_tail.strip():
            full += "\n--- last lines of the server log ---\n" + log_tail.rstrip()
        super().__init__(full)
        self.reason, self.log_tail, self.log_path = reason, log_tail, log_path
