"""Optional dependencies: turn a missing framework into an error that says what to install."""

from __future__ import annotations


class MissingExtraError(ImportError):
    """An adapter's framework is not installed; the message names the pip extra."""


def missing_extra(extra: str, exc: ImportError) -> MissingExtraError:
    """The error to raise when importing an adapter's framework failed.

    Usage, at the top of an adapter module::

        try:
            from langchain_core.tools import StructuredTool
        except ImportError as exc:
            raise missing_extra("langchain", exc) from exc
    """
    missing = exc.name or "a dependency"
    return MissingExtraError(
        f"convrec's {extra} adapter needs {missing!r}, which is not installed. "
        f"Install it with: pip install 'convrec[{extra}]'",
        name=exc.name,
    )
