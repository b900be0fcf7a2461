"""The rules of a call as one pure function: properties over generated attempts.

No sockets and no clock: each scenario drives `decide` the way the client's loop does
(decide -> budget.acquire(take) -> state.after -> on Done budget.refund(give) -> sleep
the wait), over generated outcomes, rules, budgets, deadlines and clock advances, for
several sequential calls sharing one budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from kernel_async import RetryPolicy
from kernel_async._retry import (
    FIRST_TRY_REFUND,
    MAX_FINALISE_WAIT,
    MAX_RETRY_AFTER,
    POLL_FLOOR,
    TESTING_POLL_WAIT,
    CallRules,
    CallState,
    Decision,
    Done,
    Fail,
    Outcome,
    Retry,
    RetryBudget,
    decide,
    poll_wait,
    refund_for,
    settles,
)

WALL0 = 1_700_000_000.0
"""`time.time()` when the simulated monotonic clock reads 0."""
STEPS_PER_CALL = 25
"""A call still going after this many attempts is left (only 202 polls get this far)."""

SCENARIOS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies ----------------------------------------------------------------------------

STATUSES = [200, 201, 202, 204, 301, 302, 304, 307, 400, 401, 403, 404, 408, 409, 422, 429]
STATUSES += [500, 502, 503, 504]
FAILURES = ["connect", "connect_timeout", "timeout", "reset", "truncated", "tls", "closed", "other"]


HTTP_DATE_FORMS = ("imf-fixdate", "rfc850", "asctime")


def _http_date(offset: int, form: str = "imf-fixdate") -> str:
    """`WALL0 + offset` as an HTTP-date in one of RFC 9110's three forms."""
    when = datetime.fromtimestamp(WALL0 + offset, timezone.utc)
    if form == "rfc850":
        return f"{when:%A, %d-%b-%y %H:%M:%S} GMT"
    if form == "asctime":
        return f"{when:%a %b} {when.day:2d} {when:%H:%M:%S %Y}"
    return format_datetime(when, usegmt=True)


retry_after_values = st.one_of(
    st.integers(-10, 120).map(str),
    st.floats(-5, 90, allow_nan=False).map(lambda x: f"{x:.3f}"),
    st.sampled_from(["0", "-1", "0.0", "inf", "nan", "1e400", "9" * 40, "soon", ""]),
    st.builds(_http_date, st.integers(-300, 300), st.sampled_from(HTTP_DATE_FORMS)),
)
retry_after_ms_values = st.one_of(
    st.integers(-1000, 150_000).map(str), st.sampled_from(["0", "-0", "x", ""])
)
should_retry_values = st.sampled_from(["true", "false", "TRUE", "maybe"])


@st.composite
def response_headers(draw: st.DrawFn) -> Mapping[str, str]:
    headers: CIMultiDict[str] = CIMultiDict()
    if draw(st.booleans()):
        headers["Retry-After"] = draw(retry_after_values)
    if draw(st.integers(0, 3)) == 0:
        headers["retry-after-ms"] = draw(retry_after_ms_values)
    if draw(st.integers(0, 3)) == 0:
        headers["X-Should-Retry"] = draw(should_retry_values)
    return headers


def status_outcomes() -> st.SearchStrategy[Outcome]:
    status = st.one_of(st.sampled_from(STATUSES), st.integers(100, 599))
    return st.builds(Outcome, status=status, headers=response_headers())


def failure_outcomes(own: bool) -> st.SearchStrategy[Outcome]:
    # aiohttp's hidden replay only happens on a session of the user's (the SDK's own
    # sessions have it switched off): own-session outcomes have hidden=0.
    hidden = st.just(0) if own else st.integers(0, 1)
    return st.builds(Outcome, failure=st.sampled_from(FAILURES), sent=st.booleans(), hidden=hidden)


def outcomes(own: bool) -> st.SearchStrategy[Outcome]:
    return st.one_of(status_outcomes(), failure_outcomes(own))


def policies(min_cost: int = 0) -> st.SearchStrategy[RetryPolicy]:
    return st.builds(
        RetryPolicy,
        initial_backoff=st.floats(0, 2),
        max_backoff=st.floats(0, 10),
        max_retry_after=st.one_of(st.sampled_from([0.0, 0.5, 60.0]), st.floats(0, 120)),
        budget=st.one_of(st.none(), st.integers(0, 50)),
        retry_cost=st.integers(min_cost, 10),
        timeout_retry_cost=st.integers(min_cost, 20),
    )


rule_parts = st.tuples(st.integers(0, 6), st.booleans(), st.booleans(), st.booleans())


def draw_rules(data: st.DataObject, policy: RetryPolicy, testing: bool) -> CallRules:
    """One call's rules: its retry count, idempotency, polling and 404 handling."""
    max_retries, idempotent, poll_accepted, missing_ok = data.draw(rule_parts)
    return CallRules(policy, max_retries, idempotent, poll_accepted, missing_ok, testing)


deadlines = st.one_of(st.none(), st.floats(0.05, 30))
durations = st.one_of(st.just(0.0), st.floats(0, 5))
jitters = st.floats(0, 1, exclude_max=True)
# Strategies are built once: building them per draw costs more than running `decide`.
ANSWERS = {own: st.lists(outcomes(own), min_size=1, max_size=6) for own in (True, False)}
TOOK = st.lists(durations, min_size=1, max_size=3)
DRAWS = st.lists(jitters, min_size=1, max_size=3)
GAPS = st.floats(0, 100)


# -- the client's loop, simulated ----------------------------------------------------------


@dataclass
class Ledger:
    """The shared budget, with what was really taken from and given back to it."""

    budget: RetryBudget
    taken: int = 0
    refunded: int = 0

    def take(self, amount: int) -> None:
        free = self.budget.free
        assert amount >= 0
        assert free is None or amount <= free, "decide asked for tokens the budget lacks"
        before = self.budget.tokens
        assert self.budget.acquire(amount)
        self.taken += before - self.budget.tokens
        self.check()

    def give(self, amount: int) -> None:
        before = self.budget.tokens
        self.budget.refund(amount)
        self.refunded += self.budget.tokens - before
        self.check()

    def check(self) -> None:
        capacity = self.budget.capacity
        if capacity is not None:
            assert 0 <= self.budget.tokens <= capacity
            assert self.refunded <= self.taken


@dataclass
class Step:
    outcome: Outcome
    decision: Decision
    now: float


@dataclass
class Call:
    rules: CallRules
    started: float
    deadline: float | None
    free_at_start: int | None
    steps: list[Step] = field(default_factory=list)
    state: CallState | None = None
    took: int = 0

    @property
    def end(self) -> Decision | None:
        """The last decision when it ended the call (`None`: left, or the deadline passed
        before an attempt, where the loop raises without asking)."""
        if not self.steps or isinstance(self.steps[-1].decision, Retry):
            return None
        return self.steps[-1].decision

    def wire(self) -> tuple[int, int]:
        """(requests that were not polls, polls) this call puts on the wire, counting
        the one a final `Retry` asks for (sent unless the deadline passes first)."""
        retries = sum(isinstance(s.decision, Retry) and not s.decision.poll for s in self.steps)
        polls = sum(isinstance(s.decision, Retry) and s.decision.poll for s in self.steps)
        hidden = sum(s.outcome.hidden for s in self.steps)
        return 1 + retries + hidden, polls


@dataclass
class Clock:
    now: float = 1000.0


def run_call(
    data: st.DataObject,
    rules: CallRules,
    ledger: Ledger,
    clock: Clock,
    *,
    own: bool,
    total: float | None,
    script: st.SearchStrategy[list[Outcome]] | None = None,
) -> Call:
    """One call, as `AsyncKernel._request` runs it, checking each decision on the way."""
    start = clock.now
    deadline = start + total if total is not None else None
    call = Call(rules, start, deadline, ledger.budget.free)
    state = CallState(start, deadline)
    # Like the scripted server: each attempt gets the next outcome, the last one repeats.
    answers = data.draw(script if script is not None else ANSWERS[own])
    took = data.draw(TOOK)  # how long attempts take
    draws = data.draw(DRAWS)
    for i in range(STEPS_PER_CALL):
        if deadline is not None and clock.now >= deadline:
            break  # the loop raises APITimeoutError before sending
        outcome = answers[min(i, len(answers) - 1)]
        clock.now += took[i % len(took)]
        free = ledger.budget.free
        decision = decide(
            outcome,
            state,
            rules,
            free=free,
            now=clock.now,
            wall=WALL0 + clock.now,
            jitter=draws[i % len(draws)],
        )
        check_decision(outcome, state, rules, decision, free, clock.now)
        call.steps.append(Step(outcome, decision, clock.now))
        ledger.take(decision.take)
        call.took += decision.take
        state = state.after(outcome, decision)
        if isinstance(decision, Done):
            # The refund is exactly what this call took (1 when it took nothing).
            assert decision.give == (call.took if call.took > 0 else 1)
            assert decision.give == refund_for(state.taken)
            ledger.give(decision.give)
            break
        if isinstance(decision, Fail):
            break
        clock.now += decision.wait
    call.state = state
    check_call(call)
    return call


def check_decision(
    outcome: Outcome,
    state: CallState,
    rules: CallRules,
    decision: Decision,
    free: int | None,
    now: float,
) -> None:
    """What must hold of every single decision."""
    assert decision.take >= 0
    assert free is None or decision.take <= free
    if not isinstance(decision, Retry):
        return
    # No wait starts that cannot end before the deadline.
    if state.deadline is not None:
        assert now + decision.wait < state.deadline
    assert decision.wait >= 0
    assert decision.planned >= 0
    if outcome.failure is not None:
        # A non-idempotent request that may have been sent is never sent again.
        assert rules.idempotent or not outcome.sent
        assert outcome.failure not in ("tls", "closed")
    if decision.poll:
        assert outcome.status == 202
        assert rules.poll_accepted
        assert decision.take == 0  # polling is not retrying: it costs nothing
        # A 202 poll always waits at least a floor, whatever the server says.
        assert decision.planned >= POLL_FLOOR
        if rules.testing:
            assert 0 < decision.wait <= TESTING_POLL_WAIT
        else:
            assert decision.wait >= POLL_FLOOR
            assert decision.wait == decision.planned
        if state.deadline is None:
            assert now + decision.wait < state.started + MAX_FINALISE_WAIT
        return
    assert state.retries + outcome.hidden < rules.max_retries
    assert decision.wait == (0.0 if rules.testing else decision.planned)
    if decision.retry_after is not None:
        assert decision.planned == decision.retry_after
        assert decision.retry_after <= rules.policy.max_retry_after
    status = outcome.status
    if status is not None:
        assert not 200 <= status < 400
        should = outcome.headers.get("x-should-retry")
        assert should != "false"
        assert should == "true" or status in (408, 429) or status >= 500


def check_call(call: Call) -> None:
    """What must hold of a whole call."""
    state = call.state
    assert state is not None
    non_poll, polls = call.wire()
    hidden = sum(s.outcome.hidden for s in call.steps)
    last_hidden = call.steps[-1].outcome.hidden if call.steps else 0
    # Never more non-poll requests than max_retries + 1; only aiohttp's own replay
    # inside the very last attempt (a user's session: it cannot be refused) may add one.
    assert non_poll <= call.rules.max_retries + 1 + last_hidden
    if hidden == 0:
        assert non_poll <= call.rules.max_retries + 1
    assert state.attempts == len(call.steps) + hidden
    assert state.polls == polls
    assert state.retries == non_poll - 1
    assert state.taken == call.took


# -- properties ----------------------------------------------------------------------------


@SCENARIOS
@given(
    data=st.data(),
    policy=policies(),
    testing=st.booleans(),
    own=st.booleans(),
    calls=st.integers(1, 4),
)
def test_calls_sharing_a_budget_keep_every_rule(
    data: st.DataObject, policy: RetryPolicy, testing: bool, own: bool, calls: int
) -> None:
    ledger = Ledger(RetryBudget(policy.budget))
    clock = Clock()
    for _ in range(calls):
        rules = draw_rules(data, policy, testing)
        call = run_call(data, rules, ledger, clock, own=own, total=data.draw(deadlines))
        if call.free_at_start == 0 and own and policy.retry_cost and policy.timeout_retry_cost:
            # An empty budget: one request per call (polls are not retries).
            assert call.wire()[0] == 1
        clock.now += data.draw(GAPS)  # time between calls


@SCENARIOS
@given(
    data=st.data(),
    policy=policies(min_cost=1),
    testing=st.booleans(),
    calls=st.integers(1, 6),
)
def test_empty_budget_means_one_request_per_call(
    data: st.DataObject, policy: RetryPolicy, testing: bool, calls: int
) -> None:
    ledger = Ledger(RetryBudget(0))  # RetryPolicy(budget=0): always empty
    clock = Clock()
    for _ in range(calls):
        rules = draw_rules(data, policy, testing)
        call = run_call(data, rules, ledger, clock, own=True, total=data.draw(deadlines))
        non_poll, _ = call.wire()
        assert non_poll == 1
        assert ledger.budget.tokens == 0


@SCENARIOS
@given(
    data=st.data(),
    policy=policies(),
    testing=st.booleans(),
    max_retries=st.integers(0, 6),
    total=deadlines,
)
def test_non_idempotent_request_that_may_have_left_is_never_resent(
    data: st.DataObject,
    policy: RetryPolicy,
    testing: bool,
    max_retries: int,
    total: float | None,
) -> None:
    rules = CallRules(policy, max_retries, idempotent=False, testing=testing)
    ledger = Ledger(RetryBudget(policy.budget))
    call = run_call(data, rules, ledger, Clock(), own=True, total=total, script=WITH_AMBIGUOUS)
    for step in call.steps[:-1]:
        assert step.outcome.failure is None or not step.outcome.sent


AMBIGUOUS = st.builds(
    Outcome, failure=st.sampled_from(["timeout", "reset", "truncated", "other"])
)  # sent=True: the request may have reached the server
WITH_AMBIGUOUS = st.lists(
    st.one_of(status_outcomes(), failure_outcomes(True), AMBIGUOUS), min_size=1, max_size=6
)

ZERO_HINTS: list[dict[str, str]] = [
    {},
    {"Retry-After": "0"},
    {"Retry-After": "-1"},
    {"Retry-After": "-100000"},
    {"Retry-After": "0.0001"},
    {"retry-after-ms": "0"},
    {"retry-after-ms": "-5"},
    {"Retry-After": "nan"},
    {"Retry-After": _http_date(-3600)},
]


@SCENARIOS
@given(
    data=st.data(),
    hints=st.lists(st.sampled_from(ZERO_HINTS), min_size=1, max_size=12),
    max_retry_after=st.sampled_from([0.0, 0.01, 0.2, 60.0]),
    testing=st.booleans(),
    total=deadlines,
)
def test_202_polls_always_wait_a_floor(
    data: st.DataObject,
    hints: list[dict[str, str]],
    max_retry_after: float,
    testing: bool,
    total: float | None,
) -> None:
    policy = RetryPolicy(max_retry_after=max_retry_after)
    rules = CallRules(policy, 2, idempotent=True, poll_accepted=True, testing=testing)
    script = st.just([Outcome(202, CIMultiDict(h)) for h in hints])  # the last repeats
    call = run_call(
        data, rules, Ledger(RetryBudget(0)), Clock(), own=True, total=total, script=script
    )
    for step in call.steps:
        if isinstance(step.decision, Retry):
            assert step.decision.poll
            if testing:
                assert step.decision.wait > 0
            else:
                assert step.decision.wait >= POLL_FLOOR


@SCENARIOS
@given(
    data=st.data(),
    outcome=status_outcomes(),
    policy=policies(),
    testing=st.booleans(),
    free=st.one_of(st.none(), st.integers(0, 50)),
    total=st.one_of(st.none(), st.floats(0.001, 100)),
)
def test_the_loops_first_attempt_shortcut_is_what_decide_says(
    data: st.DataObject,
    outcome: Outcome,
    policy: RetryPolicy,
    testing: bool,
    free: int | None,
    total: float | None,
) -> None:
    """After a first attempt the client's loop asks only `settles`: it must agree with
    `decide` on every response, and its refund must be decide's."""
    rules = draw_rules(data, policy, testing)
    first = CallState(0.0, total)
    decision = decide(outcome, first, rules, free=free, now=0.0, wall=WALL0, jitter=0.5)
    assert outcome.status is not None
    if settles(outcome.status, rules):
        assert decision == Done(give=FIRST_TRY_REFUND)
    else:
        assert not isinstance(decision, Done)


@given(
    polls=st.integers(0, 100),
    hint=st.one_of(st.none(), st.floats(0, MAX_RETRY_AFTER)),
    cap=st.floats(0, 1000),
)
def test_poll_wait_bounds(polls: int, hint: float | None, cap: float) -> None:
    wait = poll_wait(polls, hint, cap)
    assert wait >= POLL_FLOOR
    assert wait <= max(POLL_FLOOR, cap)
    if hint is not None and POLL_FLOOR <= hint <= cap:
        assert wait >= hint


def test_poll_wait_backs_off_from_the_floor() -> None:
    waits = [poll_wait(n, None, 60.0) for n in range(12)]
    assert waits[0] == POLL_FLOOR
    assert waits == sorted(waits)
    assert waits[-1] == 5.0


# -- unit cases ------------------------------------------------------------------------------

NOW = 50.0


def ask(
    outcome: Outcome,
    *,
    state: CallState | None = None,
    policy: RetryPolicy | None = None,
    max_retries: int = 2,
    idempotent: bool = True,
    poll_accepted: bool = False,
    missing_ok_after_retry: bool = False,
    testing: bool = False,
    free: int | None = 500,
    wall: float = WALL0,
    jitter: float = 0.5,
) -> Decision:
    rules = CallRules(
        policy or RetryPolicy(),
        max_retries,
        idempotent,
        poll_accepted,
        missing_ok_after_retry,
        testing,
    )
    return decide(
        outcome,
        state or CallState(NOW),
        rules,
        free=free,
        now=NOW,
        wall=wall,
        jitter=jitter,
    )


def test_success_after_a_timeout_retry_refunds_exactly_what_it_took() -> None:
    budget = RetryBudget(500)
    rules = CallRules(RetryPolicy(), 2, idempotent=True)
    state = CallState(NOW)
    first = Outcome(failure="timeout", sent=True)
    retry = decide(first, state, rules, free=budget.free, now=NOW, wall=WALL0, jitter=0.1)
    assert isinstance(retry, Retry)
    assert retry.take == 10  # timeout_retry_cost
    assert budget.acquire(retry.take)
    state = state.after(first, retry)
    ok = Outcome(200)
    done = decide(ok, state, rules, free=budget.free, now=NOW, wall=WALL0, jitter=0.1)
    assert done == Done(give=10)
    budget.refund(done.give)
    assert budget.tokens == 500


def test_plain_success_refunds_one_token() -> None:
    assert ask(Outcome(200)) == Done(give=1)
    assert ask(Outcome(204)) == Done(give=1)
    assert ask(Outcome(202)) == Done(give=1)  # not polling: a 202 is a success


@pytest.mark.parametrize(
    ("headers", "planned"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),  # ms wins
        ({"retry-after-ms": "bad", "Retry-After": "4"}, 4.0),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": _http_date(30)}, 30.0),
        ({"Retry-After": _http_date(-30)}, 0.0),
        ({"Retry-After": _http_date(30, "rfc850")}, 30.0),
        ({"Retry-After": _http_date(30, "asctime")}, 30.0),
        ({"Retry-After": _http_date(-30, "asctime")}, 0.0),
    ],
)
def test_retry_after_forms(headers: dict[str, str], planned: float) -> None:
    decision = ask(Outcome(503, CIMultiDict(headers)), wall=WALL0)
    assert isinstance(decision, Retry)
    assert decision.planned == planned
    assert decision.wait == planned
    assert decision.retry_after == planned
    assert decision.take == 5


def test_retry_after_http_date_is_measured_from_the_wall_passed_in() -> None:
    headers = CIMultiDict({"Retry-After": _http_date(40)})
    later = ask(Outcome(429, headers), wall=WALL0 + 25)
    assert isinstance(later, Retry) and later.planned == 15.0
    past = ask(Outcome(429, headers), wall=WALL0 + 100)
    assert isinstance(past, Retry) and past.planned == 0.0


def test_retry_after_without_it_uses_jittered_backoff() -> None:
    decision = ask(Outcome(503), jitter=0.5, state=CallState(NOW, retries=1, attempts=2))
    assert isinstance(decision, Retry)
    assert decision.retry_after is None
    assert decision.planned == 0.5  # U(0, 0.5 * 2**1) at jitter 0.5


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("61", 61.0),
        ("9" * 40, MAX_RETRY_AFTER),
    ],
)
def test_retry_after_beyond_the_cap_fails_at_once_with_the_wait(
    value: str, expected: float
) -> None:
    decision = ask(Outcome(503, CIMultiDict({"Retry-After": value})))
    assert decision == Fail("retry_after", retry_after=expected)


def test_retry_after_zero_cap_refuses_any_positive_wait() -> None:
    policy = RetryPolicy(max_retry_after=0)
    assert ask(Outcome(503, CIMultiDict({"Retry-After": "1"})), policy=policy) == Fail(
        "retry_after", retry_after=1.0
    )
    assert isinstance(ask(Outcome(503, CIMultiDict({"Retry-After": "0"})), policy=policy), Retry)


def test_retry_after_past_the_deadline_fails_now() -> None:
    state = CallState(NOW, deadline=NOW + 2)
    decision = ask(Outcome(503, CIMultiDict({"Retry-After": "2"})), state=state)
    assert decision == Fail("deadline", retry_after=2.0)
    decision = ask(Outcome(503, CIMultiDict({"Retry-After": "1.5"})), state=state)
    assert isinstance(decision, Retry) and decision.wait == 1.5


def test_x_should_retry_overrides_the_status_rule() -> None:
    yes = CIMultiDict({"x-should-retry": "true"})
    no = CIMultiDict({"X-Should-Retry": "false"})
    assert isinstance(ask(Outcome(400, yes)), Retry)
    assert isinstance(ask(Outcome(409, yes)), Retry)
    assert ask(Outcome(503, no)) == Fail("status")
    assert ask(Outcome(429, no)) == Fail("status")
    assert ask(Outcome(400)) == Fail("status")
    assert isinstance(ask(Outcome(408)), Retry)
    # Redirects are never followed, whatever the header says.
    assert ask(Outcome(302, yes)) == Fail("redirect")


def test_missing_after_a_retry_is_done_only_when_allowed() -> None:
    after_retry = CallState(NOW, attempts=1, retries=1, taken=5)
    decision = ask(Outcome(404), state=after_retry, missing_ok_after_retry=True)
    assert decision == Done(give=5)
    assert ask(Outcome(404), state=CallState(NOW), missing_ok_after_retry=True) == Fail("status")
    assert ask(Outcome(404), state=after_retry) == Fail("status")


def test_transport_failures_before_and_after_send() -> None:
    for failure in ("connect", "connect_timeout"):
        unsent = Outcome(failure=failure, sent=False)
        assert isinstance(ask(unsent, idempotent=False), Retry)
    connect_timeout = ask(Outcome(failure="connect_timeout", sent=False), idempotent=False)
    assert isinstance(connect_timeout, Retry) and connect_timeout.take == 10
    for failure in ("timeout", "reset", "truncated", "other"):
        sent = Outcome(failure=failure, sent=True)
        assert ask(sent, idempotent=False) == Fail("ambiguous")
        assert isinstance(ask(sent, idempotent=True), Retry)
    for failure in ("tls", "closed"):
        assert ask(Outcome(failure=failure, sent=False)) == Fail("fatal")


def test_retries_exhausted_and_budget_empty() -> None:
    spent = CallState(NOW, attempts=3, retries=2)
    assert ask(Outcome(503), state=spent) == Fail("exhausted")
    assert ask(Outcome(503), free=4) == Fail("budget")
    assert ask(Outcome(failure="timeout"), free=9) == Fail("budget")
    assert isinstance(ask(Outcome(failure="timeout"), free=10), Retry)
    assert isinstance(ask(Outcome(503), free=None), Retry)


def test_hidden_replay_is_charged_as_far_as_the_budget_has_it() -> None:
    reset = Outcome(failure="reset", sent=True, hidden=1)
    retry = ask(reset, free=500)
    assert isinstance(retry, Retry) and retry.take == 10  # the replay, then this retry
    assert ask(reset, free=3) == Fail("budget", take=3)
    assert ask(reset, free=0) == Fail("budget", take=0)
    assert ask(reset, max_retries=1) == Fail("exhausted", take=5)
    state = CallState(NOW).after(reset, Fail("exhausted", take=5))
    assert state.attempts == 2 and state.retries == 1 and state.taken == 5


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Retry-After": "0"},
        {"Retry-After": "-1"},
        {"retry-after-ms": "0"},
        {"Retry-After": "x"},
    ],
)
@pytest.mark.parametrize("max_retry_after", [0.0, 60.0])
def test_202_poll_floor(headers: dict[str, str], max_retry_after: float) -> None:
    policy = RetryPolicy(max_retry_after=max_retry_after)
    outcome = Outcome(202, CIMultiDict(headers))
    decision = ask(outcome, policy=policy, poll_accepted=True, free=0)
    assert isinstance(decision, Retry) and decision.poll
    assert decision.wait >= POLL_FLOOR
    assert decision.take == 0
    testing = ask(outcome, policy=policy, poll_accepted=True, testing=True)
    assert isinstance(testing, Retry) and 0 < testing.wait <= TESTING_POLL_WAIT
    assert testing.planned >= POLL_FLOOR


def test_202_poll_honours_a_longer_retry_after_up_to_the_cap() -> None:
    decision = ask(Outcome(202, CIMultiDict({"Retry-After": "7"})), poll_accepted=True)
    assert isinstance(decision, Retry) and decision.wait == 7.0
    capped = ask(
        Outcome(202, CIMultiDict({"Retry-After": "7"})),
        poll_accepted=True,
        policy=RetryPolicy(max_retry_after=2),
    )
    assert isinstance(capped, Retry) and capped.wait == 2.0


def test_202_polls_end_at_the_deadline_or_the_finalise_limit() -> None:
    state = CallState(NOW, deadline=NOW + POLL_FLOOR)
    decision = ask(Outcome(202), state=state, poll_accepted=True)
    assert isinstance(decision, Fail) and decision.why == "finalising"
    old = CallState(NOW - MAX_FINALISE_WAIT + 0.1)
    decision = ask(Outcome(202), state=old, poll_accepted=True)
    assert isinstance(decision, Fail) and decision.why == "finalising"


def test_polls_are_not_retries() -> None:
    rules = CallRules(RetryPolicy(), 0, idempotent=True, poll_accepted=True)
    state = CallState(NOW)
    for _ in range(5):
        outcome = Outcome(202)
        decision = decide(outcome, state, rules, free=0, now=NOW, wall=WALL0, jitter=0.0)
        assert isinstance(decision, Retry) and decision.poll
        state = state.after(outcome, decision)
    assert state.attempts == 5 and state.polls == 5 and state.retries == 0
    final = decide(Outcome(200), state, rules, free=0, now=NOW, wall=WALL0, jitter=0.0)
    assert final == Done(give=1)
