"""One type for every error the user fixes: ``UserError``.

``python -m evaluator`` catches it once, in ``cli.main``, and prints ``error: <message>`` (exit status 2);
the runner lets it through unwrapped (the run row records the same text). Its subclasses:

- ``db.StoreError``: the store cannot be opened, migrated or written (the URL, a read-only file, a
  newer schema); ``db.AnnotationError``: a verdict that cannot be saved;
- ``evaluator.config.ConfigError`` (and ``RunBusyError``: another process is writing the run);
- ``evaluator.data.DataError``: a dataset that cannot be read at all (one bad row is a rejection, not an error);
- ``evaluator.models.BackendError``, ``ModelResolutionError``, ``ChatTemplateError``;
- ``evaluator._import.ImportFileError``, ``evaluator.models._outputs.OutputsFileError``.

The class is defined in ``db/_errors.py``, the ground floor, so that the store's errors can be user errors
too; this module is where the rest of the project imports it from. ``RunError`` (a run that stopped,
exit status 1) is not one: the input was fine, and the message says how to resume.
"""
from db._errors import UserError

__all__ = ["UserError"]
