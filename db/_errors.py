"""The root of every error whose message the user acts on as it is.

``python -m evaluator`` prints a ``UserError`` as one line, ``error: <message>``, and exits with status 2,
never with a traceback; the dashboard shows it as a message. Its message says what went wrong and what
to do about it.

It is defined here, in the ground floor, so that the store's own errors (``StoreError``,
``AnnotationError``) can be user errors too: ``db`` imports nothing above it. ``evaluator.errors``
exports the same class for the rest of the project.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input, configuration or environment that the user can fix; the message says how."""
