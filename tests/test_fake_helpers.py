"""FakeKernel's test helpers (`fail`, `log`, `on_exec`, `create_browser`, `publish`)
refuse a wrong call at once, with an error naming the fix, and accept the official SDK's
operation names."""

from __future__ import annotations

from typing import Any

import pytest

from kernel_async import APIStatusError, AsyncKernel, BadRequestError
from kernel_async.testing import FakeKernel
from kernel_async.testing._emulator import OPERATIONS, check_fault
from kernel_async.testing._processes import check_script
from kernel_async.testing._spec import SERVED_BY_EMULATOR

pytestmark = pytest.mark.anyio


# -- fail(): operation names ---------------------------------------------------------


def test_every_official_name_of_an_emulator_operation_maps_to_a_short_one() -> None:
    assert set(OPERATIONS) >= SERVED_BY_EMULATOR
    # The trap: the short 'list' is the replays' list, not browsers.list.
    assert OPERATIONS["browsers.replays.list"] == "list"
    assert OPERATIONS["browsers.list"] == "list_browsers"


@pytest.mark.parametrize("name", sorted(SERVED_BY_EMULATOR))
async def test_fail_takes_the_official_names(fake: FakeKernel, name: str) -> None:
    fault = fake.fail(name)
    assert fault.operation == OPERATIONS[name]


async def test_a_fault_by_official_name_hits_that_call(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    b = (await client.browsers.create()).session_id
    fake.fail("browsers.retrieve", status=409)
    with pytest.raises(APIStatusError) as raised:
        await client.browsers.retrieve(b)
    assert raised.value.status_code == 409
    assert fake.requests[-1].operation == "retrieve" and fake.requests[-1].fault


async def test_an_unknown_operation_names_the_ways_to_say_one(fake: FakeKernel) -> None:
    with pytest.raises(ValueError, match=r"unknown operation 'browsers\.retreive'") as raised:
        fake.fail("browsers.retreive")
    text = str(raised.value)
    assert "'browsers.retrieve'" in text and "list_browsers" in text
    assert "'list' is browsers.replays.list" in text


# -- fail(): arguments -----------------------------------------------------------------


def fault_args(**given: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "status": 503,
        "times": 1,
        "reset": False,
        "truncate": False,
        "delay": 0.0,
        "drop_after": None,
    }
    return {**args, **given}


@pytest.mark.parametrize(
    ("given", "error", "says"),
    [
        ({"status": None, "drop_after": "2"}, TypeError, "drop_after is an int"),
        ({"status": None, "drop_after": -1}, ValueError, "drop_after must be at least 0"),
        ({"drop_after": 2}, ValueError, "give it with status=None"),
        ({"status": "503"}, TypeError, "status is an int"),
        ({"status": 99}, ValueError, "between 100 and 599"),
        ({"status": 600}, ValueError, "between 100 and 599"),
        ({"times": 0}, ValueError, "at least 1"),
        ({"times": 1.5}, TypeError, "times is an int"),
        ({"delay": -1}, ValueError, "delay must not be negative"),
        ({"delay": "1"}, TypeError, "delay is a number"),
        ({"status": None}, ValueError, "nothing to inject: give status, reset"),
    ],
)
def test_fault_arguments_that_cannot_make_a_fault(
    given: dict[str, Any], error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        check_fault(**fault_args(**given))


@pytest.mark.parametrize(
    "given",
    [
        {},
        {"status": 200},
        {"status": None, "times": None, "reset": True},
        {"status": None, "truncate": True},
        {"status": None, "delay": 0.5},
        {"status": None, "drop_after": 0},
    ],
)
def test_fault_arguments_that_make_a_fault(given: dict[str, Any]) -> None:
    check_fault(**fault_args(**given))


async def test_fail_refuses_bad_arguments_at_the_call(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    with pytest.raises(TypeError, match="drop_after"):
        fake.fail("browsers.logs.stream", status=None, drop_after="2")  # type: ignore[arg-type]
    b = (await client.browsers.create()).session_id
    fake.log(b, "one")
    stream = await client.browsers.logs.stream(b, source="supervisor")
    assert [e.message async for e in stream] == [f"browser {b} created", "one"]


# -- create_browser() --------------------------------------------------------------------


async def test_create_browser_names_an_unknown_field(fake: FakeKernel) -> None:
    with pytest.raises(TypeError, match="headles") as raised:
        fake.create_browser(headles=True)
    assert "headless" in str(raised.value)  # the fields it takes
    assert fake.sessions() == []


async def test_create_browser_says_why_a_value_is_refused(fake: FakeKernel) -> None:
    with pytest.raises(ValueError, match="timeout_seconds must be between 10 and 259200"):
        fake.create_browser(timeout_seconds=5)
    fake.create_browser(name="one")
    with pytest.raises(ValueError, match="already active"):
        fake.create_browser(name="one")


async def test_create_browser_logs_the_creation_as_the_api_does(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    b = fake.create_browser()
    stream = await client.browsers.logs.stream(b, source="supervisor")
    assert [e.message async for e in stream] == [f"browser {b} created"]


# -- on_exec(), log(), publish() -------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"stdout": "hi"}, "stdout is bytes, not str"),
        ({"stderr": "no"}, "stderr is bytes, not str"),
        ({"exit_code": "1"}, "exit_code is an int"),
        ({"exit_code": True}, "exit_code is an int"),
        ({"command": 5}, "command is a str or a callable"),
    ],
)
def test_an_exec_script_exec_could_not_answer_with(given: dict[str, Any], says: str) -> None:
    args: dict[str, Any] = {"command": "git", "stdout": b"", "stderr": b"", "exit_code": 0}
    with pytest.raises(TypeError, match=says):
        check_script(**{**args, **given})


async def test_on_exec_refuses_text_output_at_the_call(fake: FakeKernel) -> None:
    with pytest.raises(TypeError, match="stdout is bytes"):
        fake.on_exec("echo", stdout="hi")  # type: ignore[arg-type]
    assert fake.machines.scripts == []


async def test_an_unscripted_command_says_how_to_answer_it(client: AsyncKernel) -> None:
    b = (await client.browsers.create()).session_id
    with pytest.raises(BadRequestError) as raised:
        await client.browsers.process.exec(b, command="python3", args=["-V"])
    text = str(raised.value)
    assert "fake.on_exec('python3', stdout=...)" in text
    assert 'FakeKernel(backend="chromium")' in text and "emulator --chromium" in text


async def test_log_names_an_unknown_browser(fake: FakeKernel) -> None:
    with pytest.raises(KeyError, match="br_nope"):
        fake.log("br_nope", "x")


async def test_log_takes_text(fake: FakeKernel) -> None:
    b = fake.create_browser()
    with pytest.raises(TypeError, match="a log line is a str, not int"):
        fake.log(b, 5)  # type: ignore[arg-type]


async def test_publish_takes_a_resource_id_that_is_a_str(fake: FakeKernel) -> None:
    with pytest.raises(TypeError, match="a resource ID is a str, not int"):
        fake.publish("deployments.follow", 5, {"event": "log"})  # type: ignore[arg-type]
