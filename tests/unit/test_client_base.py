"""The SDK's decisions, without I/O: which error an answer becomes, when a call is
retried, how `wait` spaces its polls, how an event stream resumes, and what the CLI
makes of `key=value` arguments."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from httpx_sse import ServerSentEvent

from gengate.cli_client import parse_inputs, parse_tags
from gengate.client import (
    APIResponseError,
    APIStatusError,
    ConflictError,
    InternalServerError,
    InvalidInputError,
    NoOutputError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
)
from gengate.client._base import (
    ApiCall,
    BaseClient,
    EventStreamState,
    PollSchedule,
    backoff_s,
    download_target,
    error_from_response,
    job_page,
    parse_retry_after,
)
from gengate.client._models import JobRecord

REQUEST = httpx.Request("GET", "http://gateway.test/v1/jobs")


def _answer(status: int, body: Any = None, **headers: str) -> httpx.Response:
    if body is None:
        return httpx.Response(status, headers=headers, request=REQUEST)
    return httpx.Response(status, json=body, headers=headers, request=REQUEST)


def _error_body(code: str, **details: Any) -> dict[str, Any]:
    return {"error": code, "message": f"{code}!", "details": details, "request_id": "req_1"}


def _base(max_retries: int = 2) -> BaseClient:
    return BaseClient("gg_live_k", "http://gateway.test/", timeout=60.0, max_retries=max_retries)


# -- errors -----------------------------------------------------------------------------------


def test_an_error_answer_becomes_the_class_of_its_code() -> None:
    error = error_from_response(_answer(409, _error_body("conflict", status="succeeded")))
    assert type(error) is ConflictError
    assert (error.status_code, error.code, error.message) == (409, "conflict", "conflict!")
    assert error.details == {"status": "succeeded"} and error.request_id == "req_1"
    assert str(error) == "409 conflict: conflict! (request req_1)"
    assert error.to_dict() == {
        "error": "conflict",
        "message": "conflict!",
        "details": {"status": "succeeded"},
        "request_id": "req_1",
        "status_code": 409,
    }


def test_the_code_decides_over_the_status() -> None:
    # `/readyz` answers 503 with `overloaded`; a 422 always says `invalid_input`.
    assert type(error_from_response(_answer(503, _error_body("overloaded")))) is OverloadedError
    assert type(error_from_response(_answer(422, _error_body("invalid_input")))) is (
        InvalidInputError
    )
    limited = error_from_response(_answer(429, _error_body("rate_limited"), **{"Retry-After": "7"}))
    assert type(limited) is RateLimitError and limited.retry_after == 7.0


def test_an_answer_without_the_error_shape_is_classed_by_status() -> None:
    proxy = httpx.Response(
        404, text="<html>nope</html>", headers={"X-Request-Id": "req_p"}, request=REQUEST
    )
    error = error_from_response(proxy)
    assert type(error) is NotFoundError
    assert error.code == "not_found" and error.message == "HTTP 404 Not Found"
    assert error.request_id == "req_p"
    assert type(error_from_response(_answer(403))) is PermissionDeniedError
    assert type(error_from_response(_answer(500, ["not", "an", "object"]))) is InternalServerError

    teapot = error_from_response(_answer(418))
    assert type(teapot) is APIStatusError and teapot.code == "http_418"
    unknown = error_from_response(_answer(409, _error_body("brand_new_code")))
    assert type(unknown) is ConflictError and unknown.code == "brand_new_code"


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after(_answer(429, **{"Retry-After": "3"})) == 3.0
    assert parse_retry_after(_answer(429, **{"Retry-After": "-5"})) == 0.0
    assert parse_retry_after(_answer(429)) is None
    assert parse_retry_after(_answer(429, **{"Retry-After": "soon"})) is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    in_seconds = parse_retry_after(_answer(503, **{"Retry-After": later}))
    assert in_seconds is not None and 28 <= in_seconds <= 30


def test_a_page_of_jobs_and_its_cursor() -> None:
    records, cursor = job_page(_answer(200, {"jobs": [], "has_more": True, "cursor": "abc"}))
    assert (records, cursor) == ([], "abc")
    last = job_page(_answer(200, {"jobs": [{"id": "job_1"}], "has_more": False, "cursor": None}))
    assert last == ([{"id": "job_1"}], None)
    with pytest.raises(APIResponseError):
        job_page(_answer(200, {"items": []}))
    with pytest.raises(APIResponseError):
        job_page(httpx.Response(200, text="<html>", request=REQUEST))


# -- retries ----------------------------------------------------------------------------------


def test_retries_stop_after_max_retries() -> None:
    base = _base(max_retries=2)
    call = ApiCall("GET", "http://gateway.test/v1/jobs")
    refused = httpx.ConnectError("refused")
    assert base._retry_delay(call, 0, error=refused) is not None
    assert base._retry_delay(call, 1, error=refused) is not None
    assert base._retry_delay(call, 2, error=refused) is None
    assert _base(max_retries=0)._retry_delay(call, 0, error=refused) is None


def test_a_call_that_may_have_acted_is_retried_only_when_repeatable() -> None:
    base = _base()
    submit = ApiCall("POST", "http://gateway.test/v1/models/echo/run")
    cancel = ApiCall("POST", "http://gateway.test/v1/jobs/x/cancel", repeatable=False)
    dropped = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    for in_flight in (dropped, httpx.ReadError("reset"), httpx.ReadTimeout("slow")):
        assert base._retry_delay(submit, 0, error=in_flight) is not None
        assert base._retry_delay(cancel, 0, error=in_flight) is None
    for never_sent in (httpx.ConnectError("refused"), httpx.ConnectTimeout("slow")):
        assert base._retry_delay(cancel, 0, error=never_sent) is not None
    assert base._retry_delay(submit, 0, error=httpx.UnsupportedProtocol("ftp")) is None


def test_429_and_503_wait_as_told_and_other_answers_are_final() -> None:
    base = _base()
    call = ApiCall("POST", "http://gateway.test/v1/models/echo/run")
    assert base._retry_delay(call, 0, response=_answer(429, **{"Retry-After": "2"})) == 2.0
    assert base._retry_delay(call, 0, response=_answer(503, **{"Retry-After": "5"})) == 5.0
    no_hint = base._retry_delay(call, 0, response=_answer(503))
    assert no_hint is not None and 0.25 <= no_hint <= 0.5
    # Asked to come back in ten minutes: better to say so than to hang.
    assert base._retry_delay(call, 0, response=_answer(429, **{"Retry-After": "600"})) is None
    for final in (400, 401, 404, 409, 422, 500, 502):
        assert base._retry_delay(call, 0, response=_answer(final)) is None


def test_backoff_grows_with_jitter_up_to_a_cap() -> None:
    rng = random.Random(1)
    for attempt, (low, high) in enumerate([(0.25, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 4.0)]):
        assert low <= backoff_s(attempt, rng) <= high
    assert all(4.0 <= backoff_s(attempt, rng) <= 8.0 for attempt in range(4, 30))


# -- calls --------------------------------------------------------------------------------------


def test_submits_carry_one_idempotency_key_each_and_ask_to_answer_in_time() -> None:
    base = BaseClient("k", "http://gateway.test", timeout=20.0, max_retries=2)
    one = base._run_call(
        "team/echo", {"prompt": "p"}, sync=True, envelope={}, idempotency_key=None, cancel_after=9
    )
    two = base._run_call(
        "echo", None, sync=False, envelope={}, idempotency_key="mine", cancel_after=None
    )
    assert one.url == "http://gateway.test/v1/models/team/echo/run"
    assert one.headers["Idempotency-Key"] != two.headers["Idempotency-Key"] == "mine"
    assert one.headers["Prefer"] == "wait=15" and "Prefer" not in two.headers
    assert one.headers["Cancel-After"] == "9"
    assert one.json == {"input": {"prompt": "p"}, "sync": True}
    assert two.json == {"input": {}, "sync": False}
    assert one.success == frozenset({200, 202})

    image = base._modality_call(
        "model3d",
        model=None,
        prompt="a cube",
        params={"tags": {"k": "v"}, "detail": 2},
        idempotency_key=None,
        cancel_after=None,
    )
    assert image.url == "http://gateway.test/v1/3d/generations"
    assert image.json == {"prompt": "a cube", "tags": [{"key": "k", "value": "v"}], "detail": 2}


def test_list_parameters_and_job_paths() -> None:
    base = _base()
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    params = base._list_params(
        status="failed",
        modality=None,
        model="team/echo",
        tags={"a": "1", "b": "x:y"},
        created_after=moment,
        created_before="2026-02-01T00:00:00Z",
        limit=50,
    )
    assert params == (
        ("limit", "50"),
        ("status", "failed"),
        ("model", "team/echo"),
        ("tag", "a:1"),
        ("tag", "b:x:y"),
        ("created_after", "2026-01-02T03:04:05+00:00"),
        ("created_before", "2026-02-01T00:00:00Z"),
    )
    assert base._get_job_call("job/../x").url == "http://gateway.test/v1/jobs/job%2F..%2Fx"
    conditional = base._get_job_call("job_1", etag='"3.0"')
    assert conditional.headers == {"If-None-Match": '"3.0"'}
    assert conditional.success == frozenset({200, 304})
    assert base._cancel_call("job_1").repeatable is False
    events = base._events_call("job_1", "7")
    assert events.headers["Last-Event-ID"] == "7" and events.stream
    assert base._file_call("https://bucket.test/x.png").authenticated is False


# -- polling and streams ------------------------------------------------------------------------


def test_polls_follow_the_hint_else_back_off_and_stop_at_the_deadline() -> None:
    schedule = PollSchedule(timeout=10.0, now=100.0)
    assert schedule.next_delay(2.0, now=100.0) == 2.0
    assert schedule.next_delay(20.0, now=100.0) == 10.0  # never past the deadline
    assert schedule.next_delay(1.0, now=109.75) == pytest.approx(0.25)
    assert schedule.next_delay(1.0, now=110.0) is None
    unhinted = PollSchedule(None, now=0.0)
    delays = [unhinted.next_delay(None, now=1e9) for _ in range(10)]
    assert delays[:3] == [0.25, 0.375, 0.5625] and delays[-1] == 5.0
    assert delays == sorted(delays)
    assert PollSchedule(None, 0.0).next_delay(500.0, now=1e9) == 30.0


def _event(data: str = "", id: str = "", retry: int | None = None) -> ServerSentEvent:
    return ServerSentEvent(event="running", data=data, id=id, retry=retry)


def test_a_stream_resumes_from_the_last_id_and_gives_up_after_failures() -> None:
    state = EventStreamState(max_failures=2, rng=random.Random(0))
    response = _answer(200)
    assert state.accept(_event(id="4"), response) is None
    assert state.last_event_id == "4"
    record = state.accept(_event('{"id": "job_1", "status": "running"}', id="5"), response)
    assert record == {"id": "job_1", "status": "running"} and state.last_event_id == "5"

    first = state.reconnect_delay()
    assert first is not None and 0.25 <= first <= 0.5
    assert state.reconnect_delay() is not None
    assert state.reconnect_delay() is None  # a third failure in a row
    state.accept(_event('{"status": "succeeded"}', retry=1500), response)
    assert state.failures == 0 and state.reconnect_delay() == 1.5

    with pytest.raises(APIResponseError):
        state.accept(_event("not json"), response)
    with pytest.raises(APIResponseError):
        state.accept(_event('["a list"]'), response)


# -- downloads ----------------------------------------------------------------------------------


def _record(result: Any, status: str = "succeeded") -> JobRecord:
    return JobRecord(**JobRecord.fields_from({"id": "job_9", "status": status, "result": result}))


def test_download_targets(tmp_path: Path) -> None:
    output = {"url": "http://g.test/v1/files/j/1-0.webp?sig=x", "content_type": "image/webp"}
    second = {"url": "http://g.test/v1/files/j/1-1?sig=x", "content_type": "audio/mpeg"}
    job = _record({"url": output["url"], "outputs": [output, second]})
    assert download_target(tmp_path / "a.bin", job, 0) == tmp_path / "a.bin"
    assert download_target(tmp_path, job, 0) == tmp_path / "job_9-0.webp"
    assert download_target(tmp_path, job, 1) == tmp_path / "job_9-1.mp3"
    assert download_target(tmp_path, job, -1) == tmp_path / "job_9-1.mp3"
    with pytest.raises(NoOutputError):
        download_target(tmp_path, job, 2)
    with pytest.raises(NoOutputError):
        download_target(tmp_path, _record(None, "running"), 0)
    expired = _record({"url": None, "outputs": [{"url": None, "expired": True}]})
    with pytest.raises(NoOutputError, match="expired"):
        download_target(tmp_path, expired, 0)


def test_records_parse_leniently() -> None:
    job = _record(None, "queued")
    assert job.progress == 0 and job.cost.credits == 0.0 and job.tags == ()
    assert job.url is None and not job.is_terminal and job.created_at is None
    full = JobRecord(
        **JobRecord.fields_from(
            {
                "id": "job_1",
                "status": "failed",
                "error": {"code": "timeout", "message": "too slow"},
                "created_at": "2026-11-28T23:13:14.236Z",
                "something_new": {"kept": True},
            }
        )
    )
    assert full.error is not None and full.error.code == "timeout" and full.is_terminal
    assert full.created_at == datetime(2026, 11, 28, 23, 13, 14, 236000, tzinfo=UTC)
    assert full.to_dict()["something_new"] == {"kept": True}


# -- CLI arguments ------------------------------------------------------------------------------


def test_inputs_are_json_when_they_parse_else_strings() -> None:
    parsed = parse_inputs(
        ["prompt=a cat", "width=512", "fail=true", "ratio=0.5", "tags=[1,2]", "seed=null", "q="]
    )
    assert parsed == {
        "prompt": "a cat",
        "width": 512,
        "fail": True,
        "ratio": 0.5,
        "tags": [1, 2],
        "seed": None,
        "q": "",
    }
    assert parse_inputs(['prompt="123"', "text=a=b"]) == {"prompt": "123", "text": "a=b"}
    for bad in ("novalue", "=x"):
        with pytest.raises(typer.BadParameter):
            parse_inputs([bad])


def test_tags_are_key_colon_value() -> None:
    assert parse_tags(["project:demo", "url:http://x"]) == {"project": "demo", "url": "http://x"}
    assert parse_tags(None) is None and parse_tags([]) is None
    with pytest.raises(typer.BadParameter):
        parse_tags(["nocolon"])
