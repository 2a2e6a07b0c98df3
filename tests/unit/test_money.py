"""Money is integer micro-dollars; prices round up; a charge never exceeds its reservation."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gengate.domain.money import (
    MICRO_PER_CREDIT,
    MICRO_PER_USD,
    Price,
    PriceUnit,
    Settlement,
    cost_view,
    credits_to_micro,
    micro_to_credits,
    micro_to_usd,
    settle,
)


def test_units_of_account() -> None:
    assert MICRO_PER_USD == 1_000_000
    assert MICRO_PER_CREDIT == 10_000  # 1 credit = 1 cent


@pytest.mark.parametrize(
    ("credits", "micro"),
    [
        (1, 10_000),
        (0, 0),
        (0.1, 1_000),
        ("0.5", 5_000),
        (Decimal("2.25"), 22_500),
        (1000, 10_000_000),
        (Decimal("0.00001"), 1),  # a tenth of a micro-dollar rounds up to one
        (Decimal("0.00011"), 2),
    ],
)
def test_credits_to_micro(credits: Decimal | float | int | str, micro: int) -> None:
    assert credits_to_micro(credits) == micro
    assert isinstance(credits_to_micro(credits), int)


def test_micro_to_credits_and_usd() -> None:
    assert micro_to_credits(10_000) == 1.0
    assert micro_to_credits(1_000) == 0.1
    assert micro_to_usd(1_000_000) == 1.0
    assert micro_to_usd(10_000) == 0.01


def test_credits_round_trip() -> None:
    for credits in (0, 1, 7, 1234):
        assert micro_to_credits(credits_to_micro(credits)) == credits


def test_price_per_run_and_per_image() -> None:
    assert Price(PriceUnit.RUN, Decimal("0.1")).micro_for(1) == 1_000
    assert Price(PriceUnit.IMAGE, Decimal(1)).micro_for(3) == 30_000


def test_price_per_second_takes_fractional_seconds() -> None:
    per_second = Price(PriceUnit.SECOND, Decimal("0.5"))
    assert per_second.micro_for(2.5) == 12_500
    assert per_second.micro_for(Decimal("0.0001")) == 1  # 0.5 micro rounds up


def test_price_rounds_up_to_whole_micro() -> None:
    price = Price(PriceUnit.SECOND, Decimal("0.00001"))  # 0.1 micro per second
    assert price.micro_for(1) == 1
    assert price.micro_for(10) == 1
    assert price.micro_for(11) == 2


@pytest.mark.parametrize(
    ("chars", "units"),
    [(1, 1), (99, 1), (100, 1), (101, 2), (200, 2), (201, 3), (5000, 50)],
)
def test_price_per_100_chars_rounds_units_up(chars: int, units: int) -> None:
    price = Price(PriceUnit.CHARS_100, Decimal("0.1"))
    assert price.micro_for(Decimal(chars) / 100) == units * 1_000
    assert price.micro_for(chars / 100) == units * 1_000


def test_price_describe() -> None:
    assert Price(PriceUnit.SECOND, Decimal("0.5")).describe() == {
        "unit": "second",
        "credits_per_unit": 0.5,
        "micro_per_unit": 5_000,
    }


def test_settle_charges_the_cost_and_releases_the_reservation() -> None:
    assert settle(10_000, 4_000) == Settlement(
        release_micro=10_000, charge_micro=4_000, capped=False
    )
    assert settle(10_000, 10_000) == Settlement(10_000, 10_000, False)


def test_settle_caps_the_charge_at_the_reservation() -> None:
    result = settle(10_000, 25_000)
    assert result.charge_micro == 10_000
    assert result.release_micro == 10_000
    assert result.capped is True


@pytest.mark.parametrize("cost", [None, 0])
def test_uncharged_jobs_cost_nothing(cost: int | None) -> None:
    assert settle(10_000, cost) == Settlement(release_micro=10_000, charge_micro=0, capped=False)


def test_a_negative_cost_is_never_a_credit() -> None:
    assert settle(10_000, -500).charge_micro == 0


def test_settle_rejects_a_negative_reservation() -> None:
    with pytest.raises(ValueError, match="negative"):
        settle(-1, 0)


def test_zero_reservation_charges_nothing() -> None:
    assert settle(0, 5) == Settlement(0, 0, True)


def test_cost_view_shape() -> None:
    assert cost_view(0) == {"credits": 0.0, "cost_micro": 0, "cost_usd": 0.0, "currency": "USD"}
    view = cost_view(25_000)
    assert view == {"credits": 2.5, "cost_micro": 25_000, "cost_usd": 0.025, "currency": "USD"}
    assert isinstance(view["cost_micro"], int)
