"""The built distribution works on its own: wheel and sdist carry the package data, and
the wheel installed into a fresh venv outside the repository runs the CLI and a sample.

Dependencies come from a wheelhouse under .nox/ (filled from the package index on the
first run), so later runs need no network and take a few seconds.
"""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from kernel_async import __version__
from tests.test_docs_samples import collect

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = ROOT / ".nox" / "wheelhouse"
DATA = ["kernel_async/py.typed", "kernel_sync/py.typed", "kernel_async/testing/sample.mp4"]


def run(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(a) for a in args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


def clean_env(**extra: str) -> dict[str, str]:
    drop = ("KERNEL_", "BROWSER_ID", "PYTHONPATH", "VIRTUAL_ENV", "PIP_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return env | {"PIP_DISABLE_PIP_VERSION_CHECK": "1"} | extra


def install(wheel: Path, python: Path) -> None:
    target = f"{wheel}[cli]"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    offline = [*pip, "--no-index", "--find-links", str(WHEELHOUSE), target]
    first = subprocess.run(offline, capture_output=True, text=True, timeout=300, env=clean_env())
    if first.returncode != 0:  # first run: fill the wheelhouse from the index, then again
        fill = [sys.executable, "-m", "pip", "download", "-q", "-d", str(WHEELHOUSE), target]
        run(*fill, env=clean_env())
        run(*offline, env=clean_env())


@pytest.mark.once
def test_wheel_installs_and_runs_outside_the_repo(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "hatchling", "build", "-d", dist, cwd=ROOT, env=clean_env())
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    assert wheel.name.startswith("kernel_async-")
    assert set(DATA) <= set(zipfile.ZipFile(wheel).namelist())
    with tarfile.open(sdist) as tar:
        members = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert set(DATA) <= members
    assert {"LICENSE", "CHANGELOG.md"} <= members
    _check_metadata(wheel)

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python, script = venv / "bin" / "python", venv / "bin" / "kernel-replays"
    install(wheel, python)
    work = tmp_path / "work"  # outside the repository: nothing importable from the checkout
    work.mkdir()
    where = run(python, "-c", "import kernel_sync; print(kernel_sync.__file__)", cwd=work)
    assert where.stdout.startswith(str(venv))

    version = run(script, "--version", cwd=work, env=clean_env())
    assert version.stdout == f"kernel-replays {__version__}\n"
    demo = run(script, "demo", "-o", work / "demo.mp4", cwd=work, env=clean_env())
    assert "stopped after 3 attempts" in demo.stdout
    assert (work / "demo.mp4").read_bytes()[4:8] == b"ftyp"
    _run_readme_sample(script, python, work)


def _check_metadata(wheel: Path) -> None:
    """The license the metadata names is the one shipped; the version is the package's
    own; the project's pages are linked (on the project's host, no package index)."""
    with zipfile.ZipFile(wheel) as whl:
        info = f"kernel_async-{__version__}.dist-info"
        meta = email.message_from_bytes(whl.read(f"{info}/METADATA"))
        shipped = whl.read(f"{info}/licenses/LICENSE").decode()
    assert meta["Version"] == __version__
    assert meta["License-Expression"] == "Apache-2.0" and meta["License-File"] == "LICENSE"
    assert shipped == (ROOT / "LICENSE").read_text()
    assert "Apache License" in shipped and "Version 2.0, January 2004" in shipped
    assert "END OF TERMS AND CONDITIONS" in shipped  # the full text, not a notice
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL", []))
    assert {"Documentation", "Source", "Changelog"} <= set(urls)
    assert all(u.startswith("https://") and "github" in u for u in urls.values()), urls


def _run_readme_sample(script: Path, python: Path, work: Path) -> None:
    """Start the installed emulator, "paste its exports", run the README's sync sample."""
    sample = next(b for b in collect(ROOT / "README.md") if "from kernel_sync" in b.code)
    (work / "sample.py").write_text(sample.code)
    server = subprocess.Popen(
        [script, "--json", "emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        exports = clean_env(
            KERNEL_BASE_URL=info["base_url"],
            KERNEL_API_KEY=info["api_key"],
            BROWSER_ID=info["browser"],
        )
        done = run(python, "sample.py", cwd=work, env=exports)
        assert done.stdout.startswith("rp_")
    finally:
        server.terminate()
        server.communicate(timeout=30)
    assert server.returncode == 0
