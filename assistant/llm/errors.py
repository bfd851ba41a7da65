"""Errors of the language-model layer.

``str(error)`` is a sentence that may be shown to the person who asked; the technical cause
travels in ``detail`` and in the exception chain (``raise ... from``), for the logs only.
"""

from __future__ import annotations


class LLMError(Exception):
    """The model could not produce an answer."""

    user_message = "The language model could not answer; please try again."

    def __init__(self, message: str | None = None, *, detail: str = "") -> None:
        super().__init__(message or self.user_message)
        self.detail = detail


class LLMTimeout(LLMError):
    """No first token, or no complete answer, within the configured time."""

    user_message = "The language model did not answer in time; please try again."


class LLMUnavailable(LLMError):
    """The model cannot be reached or loaded (server down, refused, not installed)."""

    user_message = "The language model is not available right now; please try again later."
