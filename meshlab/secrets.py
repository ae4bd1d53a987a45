"""Reading a bearer token named by the spec: from an environment variable or a file.

One rule for every backend that takes a token (the Prometheus client, the collector): the variable
wins over the file; a variable or file that is named but missing or empty is a one-line
:class:`~meshlab.errors.ConfigError` naming the field; the value itself is never in a message.
Each backend wraps the text in its own redacting type.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from meshlab.errors import ConfigError


def read_token(
    field: str,
    token_env: str | None,
    token_file: str | None,
    environ: Mapping[str, str] | None = None,
    *,
    what: str = "the bearer token",
) -> str | None:
    """The token text from ``$token_env`` or ``token_file`` (env wins), or None if neither is set.

    ``field`` is the spec path of the section (``spec.metrics.prometheus``), used in errors.
    """
    env = os.environ if environ is None else environ
    if token_env:
        value = env.get(token_env, "").strip()
        if not value:
            raise ConfigError(
                f"{field}.tokenEnv: environment variable {token_env} is not set or empty; "
                f"export {what} in it"
            )
        return value
    if token_file:
        try:
            value = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"{field}.tokenFile: cannot read {token_file} ({exc.strerror}); point it at a "
                f"readable file holding {what}"
            ) from None
        if not value:
            raise ConfigError(f"{field}.tokenFile: {token_file} is empty; put {what} in it")
        return value
    return None
