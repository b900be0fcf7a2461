"""The modules that serve a browser's own families (computer use, files, processes,
logs...), each with ``register(fake) -> {official operation name: handler}``.

An operation none of them serves is answered by the generic layer (`_generic`): a 501
naming it. One line per module; the emulator imports them when it is made."""

from __future__ import annotations

FAMILY_MODULES: tuple[str, ...] = (
    "kernel_async.testing._observe",  # browsers.logs.stream
    "kernel_async.testing._machine",  # browsers.fs, browsers.process
    "kernel_async.testing._curl",  # browsers.curl
    "kernel_async.testing._computer",  # browsers.computer
    "kernel_async.testing._telemetry",  # browsers.telemetry.events, .stream
)
