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
        self.message, self.reason, self.log_tail, self.log_path = message, reason, log_tail, log_path

    @property
    def summary(self) -> str:
        """One line: what failed, the fix, and the log (the full text also quotes the log's last lines)."""
        if self.log_path is None or str(self.log_path) in self.message:
            return self.message
        return f"{self.message} (log: {self.log_path})"


def one_line(exc: BaseException) -> str:
    """An error as one line for a terminal, a status line or an eval row."""
    return exc.summary if isinstance(exc, LLMStartError) else (str(exc).splitlines() or [type(exc).__name__])[0]
