"""The one error root of meshlab and its tree; the CLI maps each branch to an exit code.

    MeshlabError                      every error meshlab raises on purpose
    ├── ConfigError                   bad input: spec, flags, files (exit 2)
    │   ├── SpecError                 the experiment spec; names the field path and the fix
    │   └── SamplesError              a samples file breaks the contract; names the line
    ├── MeshError                     routing could not be applied or read back (exit 4)
    │   └── ConflictError             someone else changed the object first (409)
    ├── MetricsError                  telemetry could not be read (exit 4)
    │   ├── RetryableMetricsError     worth trying again (backend unreachable, timeout)
    │   └── PermanentMetricsError     will not get better (bad query, missing series)
    └── LoadError                     the load generator failed (exit 4)

Every message is one line that says what is wrong and what to do. Causes are chained with
``raise ... from exc`` so a debugging user can still see them with ``--debug``.
"""

from __future__ import annotations

EXIT_BAD_INPUT = 2
EXIT_INFRASTRUCTURE = 4
EXIT_INTERRUPTED = 130


class MeshlabError(Exception):
    """Root of every error meshlab raises on purpose."""

    exit_code: int = EXIT_INFRASTRUCTURE


class ConfigError(MeshlabError):
    """Bad input from the user: spec, command-line flags or files."""

    exit_code = EXIT_BAD_INPUT


class SpecError(ConfigError):
    """The experiment spec is invalid; ``path`` is the dotted field path (``spec.canary.steps[2]``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class SamplesError(ConfigError):
    """A samples file breaks the contract documented in the README."""


class MeshError(MeshlabError):
    """Routing could not be applied to the mesh or read back from it."""


class ConflictError(MeshError):
    """The object changed under us (HTTP 409); re-read and retry, or stop."""


class MetricsError(MeshlabError):
    """Telemetry could not be read."""


class RetryableMetricsError(MetricsError):
    """A transient failure (backend unreachable, timeout): hold, retry, abort after a grace period."""


class PermanentMetricsError(MetricsError):
    """A failure that will not heal by waiting (invalid query, unknown metric)."""


class LoadError(MeshlabError):
    """The load generator could not start or failed while running."""
