"""Value types the configuration's sections share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator


def _readable(path: Path) -> Path:
    """A file the configuration names is read when it loads, so that a missing password or
    key file stops every process at its start, with the key named, not at its first use."""
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValueError(f"cannot read {path}: {reason}") from None
    return path


ReadableFile = Annotated[Path, AfterValidator(_readable)]
