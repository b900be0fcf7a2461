"""Developer sessions: `nox -s tests` (this Python), `tests_all` (every supported Python),
`lint`, `typecheck`, `codegen`, `demo`, `docs`, `soak`, `bench`."""

from __future__ import annotations

import os
from pathlib import Path

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
PRIMARY = "3.11"  # also runs the `once` tests: packaging and real browsers


def _expose_pyenv_pythons() -> None:
    # pyenv installs every version but puts only the global one on PATH: let nox find
    # python3.10 ... python3.13 wherever pyenv keeps them.
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if not root.is_dir():
        return
    found: dict[str, str] = {}
    for version in sorted(root.iterdir()):
        minor = ".".join(version.name.split(".")[:2])
        if minor in PYTHONS and (version / "bin" / f"python{minor}").exists():
            found[minor] = str(version / "bin")
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([*found.values(), path])


_expose_pyenv_pythons()

nox.options.sessions = ["tests", "lint", "typecheck", "codegen"]
nox.options.reuse_existing_virtualenvs = True
# CI must test every supported Python; elsewhere a missing one is reported and skipped.
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))

TEST_DEPS = [
    "pytest>=8",
    "hypothesis>=6.100",
    "trustme>=1.1",
    "jsonschema>=4.20",
    "pyyaml>=6",
    # The official SDK: pointed at the emulator in tests, never imported by the package.
    "kernel==0.131.0",
    "hatchling>=1.27",  # tests/test_wheel.py builds the wheel and sdist
    "pytest-xdist>=3.5",
    "playwright>=1.50",  # drives the local Chromium backend over CDP (no browser download)
    "av>=17",  # the `local` extra: decodes the recorded MP4s
    "ruff==0.17.6",  # the generators format their output (tests check it is fresh)
]
LINT_DEPS = ["ruff==0.17.6"]  # keep in step with TEST_DEPS
TYPE_DEPS = ["mypy==2.4.1", "nox", "types-PyYAML", "types-jsonschema", *TEST_DEPS]


def _pytest(session: nox.Session, select: str) -> None:
    # Three workers on the machines' 2 cores (many tests wait on sockets and subprocesses;
    # measured 34 s with 2, 27 s with 3, 26 s with 4), work-stealing so no slow test trails.
    session.install("-e", ".[cli]", *TEST_DEPS)
    session.run("pytest", "-n", "3", "--dist", "worksteal", "-m", select, *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite (but the soak) once, on the Python that runs nox.

    Real sockets on loopback only. Needs nothing but that Python and pip; the local
    Chromium tests need a `chromium` on PATH (or `KERNEL_CHROMIUM`). Every supported
    Python: `nox -s tests_all`.
    """
    _pytest(session, "not slow")


@nox.session(python=PYTHONS)
def tests_all(session: nox.Session) -> None:
    """Run the test suite on every supported Python, 3.10 to 3.13 (what CI runs).

    One Python: `nox -s tests_all-3.12`. Tests marked `once` (the wheel build, real
    browsers, docs samples) run on PRIMARY only: what they check does not depend on the
    interpreter, so CI runs each of them exactly once.
    """
    _pytest(session, "not slow" if session.python == PRIMARY else "not slow and not once")


@nox.session
def soak(session: nox.Session) -> None:
    """The soak (about 30 s): 50,000 async + 10,000 sync stops with 5% injected faults."""
    session.install("-e", ".", *TEST_DEPS)
    session.run("pytest", "-m", "slow", "-s", "tests/soak", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*LINT_DEPS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on both packages, the tools and the typed usage file."""
    session.install("-e", ".[cli]", *TYPE_DEPS)
    session.run("mypy")


@nox.session
def codegen(session: nox.Session) -> None:
    """Fail when generated code is stale: the API surface from the spec
    (tools/gen_api.py), its blocking twins (tools/gen_sync_api.py), the hand-written
    classes' twins (tools/gen_sync.py) and the API reference pages (tools/gen_docs.py).
    Regenerate by running each without --check."""
    session.install("-e", ".", "pyyaml>=6", *LINT_DEPS)  # the generators format with ruff
    session.run("python", "tools/gen_api.py", "--check")
    session.run("python", "tools/gen_sync_api.py", "--check")
    session.run("python", "tools/gen_sync.py", "--check")
    session.run("python", "tools/gen_docs.py", "--check")


@nox.session
def demo(session: nox.Session) -> None:
    """The whole stop-and-save flow against the embedded emulator, with injected faults."""
    session.install("-e", ".")
    session.run("python", "-m", "kernel_sync", "demo", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site (mkdocs-material + mkdocstrings) with --strict into site/."""
    session.install(
        "-e", ".", "mkdocs==1.6.1", "mkdocs-material==9.8.2", "mkdocstrings-python==2.0.11"
    )
    session.run("mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def bench(session: nox.Session) -> None:
    """Side-by-side benchmarks (`stop`, a generated `click_mouse`, the import, event
    streams): raw aiohttp, kernel_async, the official SDK.

    The official SDK is installed here only (a benchmark peer, never a dependency).
    Writes bench/results/latest.json; pass `-- --quick` for a smoke run.
    """
    session.install("-e", ".", "kernel==0.131.0")
    out = "bench/results/latest.json"
    session.run("python", "-c", "import os; os.makedirs('bench/results', exist_ok=True)")
    session.run("python", "bench/run.py", "--json", out, *session.posargs)
    # Event streams: events/s against the official AsyncStream, backpressure, idle streams.
    streams = "bench/results/streams.json"
    session.run("python", "bench/streams.py", "--json", streams, *session.posargs)
