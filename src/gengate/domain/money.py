"""Money as integers: micro-dollars (1 USD = 1,000,000 micro; 1 credit = 1 cent).

Prices are declared per unit (a run, an image, a second, 100 characters, a scene).
A reservation is the price of the units the input asks for, an upper bound rounded
up to whole micro-dollars; a charge is the price of the units actually produced and
never exceeds the reservation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum

MICRO_PER_USD = 1_000_000
MICRO_PER_CREDIT = 10_000


def credits_to_micro(credits: Decimal | float | int | str) -> int:
    """Credits (possibly fractional) to micro-dollars, rounded up."""
    value = Decimal(str(credits)) * MICRO_PER_CREDIT
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def micro_to_credits(micro: int) -> float:
    return micro / MICRO_PER_CREDIT


def micro_to_usd(micro: int) -> float:
    return micro / MICRO_PER_USD


class PriceUnit(StrEnum):
    RUN = "run"
    IMAGE = "image"
    SECOND = "second"
    CHARS_100 = "100_chars"
    SCENE = "scene"


@dataclass(frozen=True, slots=True)
class Price:
    """`credits` per `unit`; units may be fractional (seconds), prices round up."""

    unit: PriceUnit
    credits: Decimal

    def micro_for(self, units: float | int | Decimal) -> int:
        quantity = Decimal(str(units))
        if self.unit is PriceUnit.CHARS_100:
            quantity = Decimal(math.ceil(quantity))
        value = quantity * self.credits * MICRO_PER_CREDIT
        return int(value.to_integral_value(rounding=ROUND_CEILING))

    def describe(self) -> dict[str, object]:
        return {
            "unit": self.unit.value,
            "credits_per_unit": float(self.credits),
            "micro_per_unit": self.micro_for(1),
        }


@dataclass(frozen=True, slots=True)
class Settlement:
    """What the terminal transition of a job does to its account."""

    release_micro: int
    charge_micro: int
    capped: bool


def settle(reserved_micro: int, cost_micro: int | None) -> Settlement:
    """Release the whole reservation and charge the cost, capped at the reservation.

    `cost_micro` is None for jobs that are not charged (failed, cancelled).
    """
    if reserved_micro < 0:
        raise ValueError("reservation cannot be negative")
    cost = max(0, cost_micro or 0)
    charge = min(cost, reserved_micro)
    return Settlement(release_micro=reserved_micro, charge_micro=charge, capped=cost > charge)


def cost_view(cost_micro: int) -> dict[str, object]:
    """The `cost` object of the job record."""
    return {
        "credits": micro_to_credits(cost_micro),
        "cost_micro": cost_micro,
        "cost_usd": micro_to_usd(cost_micro),
        "currency": "USD",
    }
