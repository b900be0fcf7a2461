"""``python -m kernel_sync`` / ``kernel-replays``: the replay lifecycle from a shell.

Exit codes: 0 ok, 1 API or runtime error (one line), 2 usage error, 130 interrupted,
141 output closed early (`| head`: quiet, like other Unix tools).
Options go before or after the command; ``--json`` makes every output JSON, errors too
(one ``{"error": {...}}`` line on stderr). Reads ``KERNEL_API_KEY`` and ``KERNEL_BASE_URL``
like the SDK. Commands live in modules with a ``register(commands)`` function, listed in
`COMMANDS` (see `kernel_sync._cli.Commands`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from . import _cli, _cli_browsers, _cli_local, _cli_replays

__all__ = ["COMMANDS", "main"]

COMMANDS = (_cli_replays.register, _cli_browsers.register, _cli_local.register)


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Entry point of ``python -m kernel_sync`` and ``kernel-replays``; returns the exit code."""
    return _cli.run(COMMANDS, argv, out=out, err=err)


if __name__ == "__main__":
    raise SystemExit(main())
