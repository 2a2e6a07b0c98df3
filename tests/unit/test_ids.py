"""Public ids: `prefix_` + 32 hex digits of a UUIDv7; bare UUIDs accepted; time-ordered."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from gengate.domain.ids import format_id, new_uuid, parse_id, uuid7_floor, uuid7_time_ms

SAMPLE = uuid.UUID("01890a5d-ac96-774b-bcce-b302099a8057")


def test_format_id() -> None:
    assert format_id("job", SAMPLE) == "job_01890a5dac96774bbcceb302099a8057"


@pytest.mark.parametrize("prefix", ["job", "acct", "key", "out", "whd"])
def test_format_parse_round_trip(prefix: str) -> None:
    value = new_uuid()
    text = format_id(prefix, value)
    assert text.startswith(f"{prefix}_")
    assert len(text) == len(prefix) + 1 + 32
    assert parse_id(prefix, text) == value


@pytest.mark.parametrize(
    "text",
    [
        "01890a5dac96774bbcceb302099a8057",
        "01890a5d-ac96-774b-bcce-b302099a8057",
        "01890A5D-AC96-774B-BCCE-B302099A8057",
        "job_01890A5DAC96774BBCCEB302099A8057",
    ],
)
def test_bare_and_uppercase_uuids_are_accepted(text: str) -> None:
    assert parse_id("job", text) == SAMPLE


@pytest.mark.parametrize(
    "text",
    [
        "acct_01890a5dac96774bbcceb302099a8057",  # another kind's prefix
        "jobs_01890a5dac96774bbcceb302099a8057",
        "job-01890a5dac96774bbcceb302099a8057",
        "job_01890a5dac96774bbcceb302099a805",  # 31 hex
        "job_01890a5dac96774bbcceb302099a80577",  # 33 hex
        "job_01890a5dac96774bbcceb302099a805z",  # not hex
        "job_",
        "",
        "job",
        "not-an-id",
        "job_job_01890a5dac96774bbcceb302099a8057",
        "z" * 36,
        "01890a5d-ac96-774b-bcce-b302099a805",  # dashed, one digit short
    ],
)
def test_malformed_ids_parse_to_none(text: str) -> None:
    assert parse_id("job", text) is None


@pytest.mark.parametrize(
    "text",
    [
        " 1890a5dac96774bbcceb302099a8057",  # leading space in place of a digit
        "+1890a5dac96774bbcceb302099a8057",  # a sign in place of a digit
        "01890_5dac96774bbcceb302099a8057",  # an underscore digit separator
        "{01890a5d-ac96-774bbcceb302099a8057}",  # braces
        "0-1-8-9-0a5dac96774bbcceb302099a8057",  # dashes in the wrong places
    ],
)
def test_near_uuid_garbage_parses_to_none(text: str) -> None:
    # Each of these is 32 or 36 characters long yet is not a UUID's text; accepting them
    # would give one job many spellings, and a malformed id must be answered 404.
    assert parse_id("job", text) is None


def test_new_uuid_is_version_7() -> None:
    value = new_uuid()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_new_uuid_is_strictly_increasing() -> None:
    values = [new_uuid() for _ in range(10_000)]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert all(v.version == 7 for v in values)


def test_new_uuid_carries_the_current_time() -> None:
    before = int(datetime.now(UTC).timestamp() * 1000)
    value = new_uuid()
    after = int(datetime.now(UTC).timestamp() * 1000)
    # A v7 generator may run a few ms ahead of the clock after a burst within one ms.
    assert before <= uuid7_time_ms(value) <= after + 100


def test_uuid7_floor_is_a_version_7_uuid_of_that_millisecond() -> None:
    moment = datetime(2024, 5, 1, 12, 0, 0, 123_000, tzinfo=UTC)
    floor = uuid7_floor(moment)
    assert floor.version == 7
    assert floor.variant == uuid.RFC_4122
    assert uuid7_time_ms(floor) == int(moment.timestamp() * 1000)


def test_uuid7_floor_orders_ids_minted_before_and_after_a_moment() -> None:
    before = new_uuid()
    moment = datetime.fromtimestamp((uuid7_time_ms(before) + 1) / 1000, UTC)
    while int(datetime.now(UTC).timestamp() * 1000) < uuid7_time_ms(before) + 2:
        pass  # spin (a couple of milliseconds) until the clock is past `moment`
    after = new_uuid()
    floor = uuid7_floor(moment)
    assert before < floor <= after


def test_uuid7_floor_is_monotonic_in_time() -> None:
    moment = datetime(2025, 1, 1, tzinfo=UTC)
    assert uuid7_floor(moment) < uuid7_floor(moment + timedelta(milliseconds=1))
    assert uuid7_floor(moment - timedelta(days=1)) < uuid7_floor(moment)


def test_uuid7_floor_clamps_before_the_epoch() -> None:
    floor = uuid7_floor(datetime(1960, 1, 1, tzinfo=UTC))
    assert uuid7_time_ms(floor) == 0
    assert floor.version == 7
