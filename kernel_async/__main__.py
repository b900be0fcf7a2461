"""``python -m kernel_async``: the same command line as ``python -m kernel_sync``
(``kernel-replays``), so either package name works from a shell."""

from __future__ import annotations

from kernel_sync.__main__ import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
