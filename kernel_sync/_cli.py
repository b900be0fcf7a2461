"""The CLI's frame: options accepted anywhere, one way to print results and errors, exit
codes, and `Commands`, through which command modules register their subcommands.

A command module is a ``register(commands: Commands) -> None`` function that calls
`Commands.add` once per subcommand; ``kernel_sync/__main__.py`` lists the modules.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, TextIO
from urllib.parse import urlsplit

from kernel_async import APIError, APIStatusError, KernelError, __version__

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

    from ._generated import Kernel

__all__ = ["CLIError", "Commands", "Context", "identifier", "run", "whole_number"]

PROG = "kernel-replays"
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# Output closed early (`| head`): quiet, with the status a shell gives a tool that SIGPIPE
# ended (128 + 13), so `set -o pipefail` scripts see what they see for `yes | head`.
EXIT_CLOSED_OUTPUT = 141

# Options every client command accepts before or after its name; SUPPRESS keeps a value
# given before the subcommand from being overwritten by the subparser's default.
CLIENT_DEFAULTS: dict[str, object] = {
    "json": False,
    "api_key": None,
    "base_url": None,
    "timeout": 60.0,
    "max_retries": 2,
}

EPILOG = """\
environment: KERNEL_API_KEY, KERNEL_BASE_URL (as the SDK reads them).
exit codes: 0 ok, 1 API or runtime error, 2 usage error, 130 interrupted (Ctrl-C),
141 output closed early (e.g. `| head`): quietly, as other Unix tools do.
With --json, results are JSON on stdout and errors one JSON object on stderr:
{"error": {"type": ..., "message": ..., "status": ..., "code": ..., "attempts": ...}}."""


class CLIError(Exception):
    """A failure to report in one line (exit 1)."""


class UsageError(Exception):
    """A bad command line (exit 2)."""

    def __init__(self, message: str, prog: str, usage: str) -> None:
        super().__init__(message)
        self.prog = prog
        self.usage = usage


class _Parser(argparse.ArgumentParser):
    # Raise instead of printing and exiting, so usage errors follow --json too.
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.prog, self.format_usage())

    # argparse drops write errors of --help and --version: a closed pipe ends them as it
    # ends every command (quietly, 141).
    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        if message:
            (file or sys.stderr).write(message)


class Context:
    """What a command's ``run(ctx)`` gets: the parsed arguments and the output streams."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.json: bool = args.json

    def emit(self, data: object, text: str) -> None:
        """Print a result: `data` as one JSON line under ``--json``, else `text`."""
        self.out.write((json.dumps(data) if self.json else text) + "\n")
        self.out.flush()

    def warn(self, message: str) -> None:
        """One clean warning line on stderr (JSON under ``--json``)."""
        line = json.dumps({"warning": message}) if self.json else f"warning: {message}"
        self.err.write(line + "\n")
        self.err.flush()

    def client(self) -> Kernel:
        """A `Kernel` from the client options; configuration problems become `CLIError`."""
        from ._generated import Kernel

        a = self.args
        if a.api_key is None and not os.environ.get("KERNEL_API_KEY"):
            raise CLIError("no API key: pass --api-key or set KERNEL_API_KEY")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                kernel = Kernel(
                    api_key=a.api_key,
                    base_url=a.base_url,
                    timeout=a.timeout,
                    max_retries=a.max_retries,
                )
            except (ValueError, TypeError):
                raise  # names its parameter: reported as a usage error of that flag

        for w in caught:  # the message alone: no file, line or source text
            self.warn(str(w.message))
        return kernel


Run = Callable[[Context], "int | None"]


class Commands:
    """Registers subcommands: ``commands.add("name", help=..., run=...)``."""

    def __init__(self, subparsers: Any, client_options: argparse.ArgumentParser) -> None:
        self._sub = subparsers
        self._client_options = client_options
        self._json_only = _Parser(add_help=False)
        _add_json(self._json_only)

    def add(
        self,
        name: str,
        *,
        help: str,
        run: Run,
        description: str | None = None,
        client: bool = True,
    ) -> argparse.ArgumentParser:
        """Add a subcommand and return its parser, to add its own arguments to.

        Args:
            name: The subcommand.
            help: One line for the command list (also the description by default).
            run: Called with a `Context`; returns the exit code (`None` means 0).
            description: Longer text for the subcommand's ``--help``.
            client: Accept the client options (``--api-key``, ``--base-url``,
                ``--timeout``, ``--max-retries``); ``--json`` is always accepted.
        """
        parents = [self._client_options if client else self._json_only]
        parser: argparse.ArgumentParser = self._sub.add_parser(
            name,
            help=help,
            description=description or help,
            parents=parents,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.set_defaults(run=run)
        return parser


# -- argument types: errors name the flag, since argparse prefixes "argument --flag:" --


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        return value

    return parse


def seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def local_time(t: datetime) -> str:
    """A time as this machine's local time with its zone name: no guessing which zone."""
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def identifier(text: str) -> str:
    """An argparse type: an ID the API can address (not empty, ``.`` or ``..``)."""
    if text in ("", ".", ".."):
        raise argparse.ArgumentTypeError(f"expected an ID, got {text!r}")
    return text


def _api_key(text: str) -> str:
    if not text or any(c in text for c in "\r\n\0"):
        raise argparse.ArgumentTypeError("must be non-empty, without CR, LF or NUL")
    return text


def _base_url(text: str) -> str:
    url = urlsplit(text)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise argparse.ArgumentTypeError(f"expected an http(s) URL with a host, got {text!r}")
    return text


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="JSON output, errors included (accepted before or after the command)",
    )


def _client_options() -> argparse.ArgumentParser:
    p = _Parser(add_help=False)
    group = p.add_argument_group("options (before or after the command)")
    sup = argparse.SUPPRESS
    group.add_argument("--api-key", type=_api_key, default=sup, help="default: $KERNEL_API_KEY")
    group.add_argument(
        "--base-url",
        type=_base_url,
        default=sup,
        help="API root (default: $KERNEL_BASE_URL, then https://api.onkernel.com)",
    )
    group.add_argument(
        "--timeout", type=seconds, default=sup, metavar="SECONDS", help="per attempt (default: 60)"
    )
    group.add_argument(
        "--max-retries",
        type=whole_number(0),
        default=sup,
        metavar="N",
        help="retries after the first attempt (default: 2)",
    )
    _add_json(p)
    return p


def build_parser(modules: Iterable[Callable[[Commands], None]]) -> argparse.ArgumentParser:
    """The whole command line: global options, then each module's subcommands."""
    client_options = _client_options()
    parser = _Parser(
        prog=PROG,
        description="Record, stop and download Kernel browser replays.",
        epilog=EPILOG,
        parents=[client_options],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = Commands(sub, client_options)
    for register in modules:
        register(commands)
    return parser


def run(
    modules: Iterable[Callable[[Commands], None]],
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Parse `argv`, run the command and return the exit code; never raises for errors."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        try:
            return _run(modules, argv, out, err)
        finally:  # also after --help/--version (SystemExit): a closed pipe shows here
            out.flush()
            err.flush()
    except BrokenPipeError:
        _discard_unwritable(out, err)
        return EXIT_CLOSED_OUTPUT


def _discard_unwritable(*streams: TextIO) -> None:
    """Point each standard stream whose reader is gone at /dev/null, so the interpreter's
    own flush at exit finds a reader and prints no "Exception ignored" lines."""
    for stream in streams:
        try:
            stream.flush()
        except BrokenPipeError:  # its text is still buffered: it would fail again at exit
            with contextlib.suppress(OSError, ValueError):  # no file descriptor (StringIO)
                devnull = os.open(os.devnull, os.O_WRONLY)
                try:
                    os.dup2(devnull, stream.fileno())
                finally:
                    os.close(devnull)


def _run(
    modules: Iterable[Callable[[Commands], None]],
    argv: Sequence[str] | None,
    out: TextIO,
    err: TextIO,
) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in (argv[: argv.index("--")] if "--" in argv else argv)
    try:
        args = build_parser(modules).parse_args(argv)
        for name, value in CLIENT_DEFAULTS.items():
            if not hasattr(args, name):
                setattr(args, name, value)
        code = args.run(Context(args, out, err))
        return EXIT_OK if code is None else int(code)
    except BrokenPipeError:
        raise  # the reader of our output left: `run` ends quietly
    except UsageError as exc:
        if as_json:
            return _fail(err, EXIT_USAGE, {"type": "usage", "message": str(exc)})
        err.write(f"{exc.usage}{exc.prog}: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return _report(err, as_json, EXIT_INTERRUPTED, "interrupted", "interrupted")
    except APIError as exc:
        return _report(err, as_json, EXIT_ERROR, type(exc).__name__, str(exc), **_api_fields(exc))
    except (ValueError, TypeError) as exc:
        flag = flag_for(str(exc))
        if flag is None:
            return _report(err, as_json, EXIT_ERROR, type(exc).__name__, str(exc))
        # The SDK refused a value before sending: that value came from this flag.
        message = f"argument {flag}: {exc}"
        if as_json:
            return _fail(err, EXIT_USAGE, {"type": "usage", "message": message})
        err.write(f"error: {message}\n")
        return EXIT_USAGE
    except (CLIError, KernelError) as exc:
        return _report(err, as_json, EXIT_ERROR, type(exc).__name__, str(exc))
    except OSError as exc:  # e.g. the output directory: name the user's path
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc)
        return _report(err, as_json, EXIT_ERROR, type(exc).__name__, text)


# The SDK's checks name its parameters; these are the flags that set them.
FLAGS = {
    "api_key": "--api-key",
    "base_url": "--base-url (or KERNEL_BASE_URL)",
    "framerate": "--framerate",
    "id": "BROWSER",
    "id_or_name": "ID_OR_NAME",
    "limit": "--page-size",
    "max_duration_in_seconds": "--max-duration",
    "name": "--name",
    "query": "--query",
    "replay_id": "REPLAY",
    "start_url": "--start-url",
    "tags": "--tag",
    "timeout_seconds": "--timeout-seconds",
    "viewport": "--viewport",
}


def flag_for(message: str) -> str | None:
    """The flag whose value an SDK argument error is about (its message starts with the
    parameter's name, e.g. ``limit must be <= 100``), or `None`."""
    head = message.split(" ", 1)[0].split(".", 1)[0].rstrip(":")
    return FLAGS.get(head)


def _api_fields(exc: APIError) -> dict[str, object]:
    fields: dict[str, object] = {"attempts": exc.attempts}
    if isinstance(exc, APIStatusError):
        fields["status"] = exc.status_code
        fields["code"] = exc.error.code if exc.error is not None else None
    return fields


def _report(
    err: TextIO, as_json: bool, exit_code: int, kind: str, message: str, /, **extra: object
) -> int:
    if as_json:
        return _fail(err, exit_code, {"type": kind, "message": message, **extra})
    err.write(f"error: {message}\n" if kind != "interrupted" else "interrupted\n")
    return exit_code


def _fail(err: TextIO, exit_code: int, error: dict[str, object]) -> int:
    err.write(json.dumps({"error": error}) + "\n")
    return exit_code
