"""Synthetic card transactions with realistic fraud patterns, deterministic per seed.

Legitimate spend follows each cardholder's habits: a home city, a typical
ticket size, a preference for online shopping, a daily rhythm in local time,
and now and then a trip to another city (with a plausible travel time). Fraud
arrives in *episodes* on a compromised card, four kinds of them:

- ``cnp`` (card not present): bursts of online purchases at risky merchants,
  usually from another city, sometimes after a tiny "test" charge;
- ``atm``: cash withdrawals with a skimmed card, round amounts, often far away;
- ``stolen_pos``: a stolen card used in shops nearby (no geo jump), at
  electronics and jewellery merchants, several in an hour;
- ``ato`` (account takeover): a single online purchase that looks ordinary.

Half of the episodes start at local night. Legitimate data carries the hard
negatives: big purchases, trips, night-owls, online-heavy cardholders.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass
from typing import Any

from streamfer.errors import ConfigError
from streamfer.models.generators.catalog import (
    CITIES,
    MCC_BY_RISK,
    USD_PER_UNIT,
    haversine_km,
    local_hour,
)

# 2026-01-01T00:00:00Z: a fixed origin keeps the stream identical per seed.
DEFAULT_START_MS = 1_767_225_600_000
_HOUR_MS = 3_600_000
_CARD_MEAN_INTERVAL_MS = 4 * _HOUR_MS  # between proposals per card, before the daily rhythm
# Fraud transactions per episode (~2.95) over the share of proposals that the daily
# rhythm accepts as legitimate spend (~0.58), measured: sets the episode rate per tick.
_EPISODE_TXS_PER_LEGIT = 5.05
_ECOM_MCCS = ("5999", "5311", "5651", "4511", "7011", "4814", "5942", "5732")
_ECOM_WEIGHTS = (25, 15, 20, 6, 6, 12, 8, 8)
_CNP_MCCS = ("5732", "5967", "6051", "7995", "4829", "5999", "5944", "4511")
_EPISODE_KINDS = ("cnp", "atm", "stolen_pos", "ato")
_EPISODE_WEIGHTS = (0.45, 0.20, 0.25, 0.10)
_TICKET: dict[str, float] = {"4511": 6.0, "7011": 4.0, "5732": 3.0, "5944": 3.5}


def _diurnal(hour: float) -> float:
    """Relative activity of cardholders by local hour: quiet nights, busy afternoons."""
    return 0.08 + 0.92 * max(0.0, math.sin(math.pi * (hour - 6.0) / 17.5))


@dataclass(slots=True)
class _Card:
    card_id: str
    home: int
    city: int
    currency: str
    mean_usd: float
    ecom_share: float
    last_ts: int


class TransactionGenerator:
    """An endless, deterministic stream of ``(record, is_fraud)`` pairs.

    ``fraud_rate`` is the expected share of fraudulent records; timestamps
    (``ts``, epoch ms) increase and start at ``start_ms`` (default
    2026-01-01T00:00Z, so a seed always gives the same stream).
    """

    def __init__(
        self,
        seed: int = 0,
        fraud_rate: float = 0.01,
        n_cards: int = 5000,
        start_ms: int | None = None,
    ) -> None:
        if not 0.0 <= fraud_rate < 0.5:
            raise ConfigError(f"fraud_rate | got {fraud_rate!r}. Note: expected 0 <= rate < 0.5")
        if n_cards < 1:
            raise ConfigError(f"n_cards | got {n_cards!r}. Note: expected at least 1")
        self.seed = seed
        self.fraud_rate = fraud_rate
        self._rng = random.Random(seed)
        self._now = DEFAULT_START_MS if start_ms is None else int(start_ms)
        self._tick_ms = _CARD_MEAN_INTERVAL_MS / n_cards
        self._episode_p = fraud_rate / ((1.0 - fraud_rate) * _EPISODE_TXS_PER_LEGIT)
        self._count = 0
        self._pending: list[tuple[int, int, dict[str, Any]]] = []  # scheduled fraud (ts, seq, tx)
        city_weights = [c[4] for c in CITIES]
        self._cards = [self._new_card(city_weights) for _ in range(n_cards)]
        activity = [self._rng.lognormvariate(0.0, 0.6) for _ in range(n_cards)]
        self._cum_activity = [sum(activity[: i + 1]) for i in range(n_cards)]

    def _new_card(self, city_weights: list[float]) -> _Card:
        rng = self._rng
        home = rng.choices(range(len(CITIES)), weights=city_weights)[0]
        return _Card(
            card_id=f"card-{rng.getrandbits(48):012x}",
            home=home,
            city=home,
            currency=CITIES[home][3],
            mean_usd=rng.lognormvariate(math.log(45.0), 0.6),
            ecom_share=rng.betavariate(2.0, 5.0),
            last_ts=0,
        )

    def __iter__(self) -> TransactionGenerator:
        return self

    def __next__(self) -> tuple[dict[str, Any], bool]:
        return self.next()

    def next(self) -> tuple[dict[str, Any], bool]:
        """The next transaction in time order and whether it is fraudulent."""
        while True:
            self._now += max(1, round(self._rng.expovariate(1.0 / self._tick_ms)))
            if self._pending and self._pending[0][0] <= self._now:
                return heapq.heappop(self._pending)[2], True
            if self._rng.random() < self._episode_p:
                self._start_episode()
                continue
            card = self._pick_card()
            if self._rng.random() < _diurnal(local_hour(self._now, CITIES[card.city][2])):
                return self._legit(card), False

    # -- legitimate spend ------------------------------------------------------

    def _pick_card(self) -> _Card:
        return self._rng.choices(self._cards, cum_weights=self._cum_activity)[0]

    def _maybe_travel(self, card: _Card) -> None:
        rng = self._rng
        away = card.city != card.home
        if rng.random() >= (0.08 if away else 0.004):
            return
        dest = card.home if away else rng.randrange(len(CITIES))
        here, there = CITIES[card.city], CITIES[dest]
        flight_ms = (haversine_km(here[1], here[2], there[1], there[2]) / 800.0 + 2.0) * _HOUR_MS
        if self._now - card.last_ts >= flight_ms:
            card.city = dest

    def _legit(self, card: _Card) -> dict[str, Any]:
        rng = self._rng
        self._maybe_travel(card)
        card.last_ts = self._now
        city = CITIES[card.city]
        r = rng.random()
        if r < card.ecom_share:
            channel, mcc = "ecom", rng.choices(_ECOM_MCCS, weights=_ECOM_WEIGHTS)[0]
        elif r < card.ecom_share + 0.04:
            channel, mcc = "atm", "6011"
        else:
            channel = "pos"
            g = rng.random()
            group = "low" if g < 0.75 else "medium" if g < 0.95 else "high"
            mcc = rng.choice(MCC_BY_RISK[group])
            if mcc == "6011":
                mcc = "5732"
        if channel == "atm":
            usd = rng.choice((20.0, 40.0, 60.0, 100.0, 100.0, 200.0, 300.0))
        else:
            base = 0.6 if mcc in MCC_BY_RISK["low"] else 1.4
            usd = card.mean_usd * base * _TICKET.get(mcc, 1.0) * rng.lognormvariate(0.0, 0.7)
            if rng.random() < 0.01:  # the occasional big purchase
                usd *= rng.uniform(5.0, 15.0)
        spread = 0.02 if channel == "ecom" else 0.08
        lat = city[1] + rng.gauss(0.0, spread)
        lon = city[2] + rng.gauss(0.0, spread)
        return self._record(card, usd, mcc, channel, lat, lon, self._now, card.city)

    # -- fraud -----------------------------------------------------------------

    def _start_episode(self) -> None:
        rng = self._rng
        card = self._pick_card()
        kind = rng.choices(_EPISODE_KINDS, weights=_EPISODE_WEIGHTS)[0]
        far = {"cnp": 0.8, "atm": 0.6, "stolen_pos": 0.0, "ato": 0.5}[kind]
        city = rng.randrange(len(CITIES)) if rng.random() < far else card.city
        lon = CITIES[city][2]
        start = self._now + round(rng.uniform(0.0, 600_000.0))
        if rng.random() < 0.5:  # wait for local night at the fraudster's location
            wait_h = (24.0 - local_hour(start, lon)) % 24.0 + rng.uniform(0.0, 5.0)
            start += round(wait_h * _HOUR_MS)
        if kind == "cnp":
            n = min(8, 1 + int(rng.expovariate(1.0 / 2.0)))
            gap_s, channel = 90.0, "ecom"
        elif kind == "atm":
            n = rng.randint(1, 4)
            gap_s, channel = 300.0, "atm"
        elif kind == "stolen_pos":
            n = rng.randint(2, 6)
            gap_s, channel = 900.0, "pos"
        else:
            n, gap_s, channel = 1, 0.0, "ecom"
        ts = start
        for i in range(n):
            mcc, usd = self._fraud_ticket(kind, card, first=i == 0)
            spread = 0.02 if channel == "ecom" else 0.08
            lat = CITIES[city][1] + rng.gauss(0.0, spread)
            lo = CITIES[city][2] + rng.gauss(0.0, spread)
            tx = self._record(card, usd, mcc, channel, lat, lo, ts, city)
            heapq.heappush(self._pending, (ts, self._count, tx))
            ts += max(1000, round(rng.expovariate(1.0 / gap_s) * 1000.0)) if gap_s else 0

    def _fraud_ticket(self, kind: str, card: _Card, first: bool) -> tuple[str, float]:
        rng = self._rng
        if kind == "cnp":
            mcc = rng.choice(_CNP_MCCS)
            if first and rng.random() < 0.3:
                return mcc, rng.uniform(0.5, 5.0)  # card test
            return mcc, max(card.mean_usd * rng.uniform(2.0, 12.0), rng.uniform(150.0, 1500.0))
        if kind == "atm":
            return "6011", float(rng.choice((200, 300, 400, 500, 600, 800)))
        if kind == "stolen_pos":
            mcc = rng.choice(("5732", "5944", "5732", "5311", "5541"))
            return mcc, card.mean_usd * rng.uniform(2.0, 8.0)
        mcc = rng.choice(("5999", "5651", "5311", "4814", "5411"))
        return mcc, card.mean_usd * rng.uniform(1.0, 3.0)

    # -- records ---------------------------------------------------------------

    def _record(
        self,
        card: _Card,
        usd: float,
        mcc: str,
        channel: str,
        lat: float,
        lon: float,
        ts: int,
        city: int,
    ) -> dict[str, Any]:
        self._count += 1
        digits = 0 if card.currency == "JPY" else 2
        amount = round(max(usd, 0.5) / USD_PER_UNIT[card.currency], digits)
        return {
            "tx_id": f"tx-{self.seed:x}-{self._count:010d}",
            "card_id": card.card_id,
            "amount": float(amount),
            "currency": card.currency,
            "merchant_id": f"m-{CITIES[city][0][:3]}-{mcc}-{self._rng.randrange(400):03d}",
            "mcc": mcc,
            "ts": int(ts),
            "lat": round(lat, 5),
            "lon": round(lon, 5),
            "channel": channel,
        }
