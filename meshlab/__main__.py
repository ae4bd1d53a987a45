"""``python -m meshlab``: the same as the ``meshlab`` command."""

from meshlab.cli import entrypoint

entrypoint()
