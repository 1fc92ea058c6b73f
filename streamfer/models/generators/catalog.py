"""Cities, currencies, merchant categories and distances shared by generator and features."""

from __future__ import annotations

import math

import numpy as np

# name, lat, lon, currency, weight (share of cardholders living there)
CITIES: tuple[tuple[str, float, float, str, float], ...] = (
    ("new_york", 40.71, -74.01, "USD", 8.0),
    ("chicago", 41.88, -87.63, "USD", 4.0),
    ("los_angeles", 34.05, -118.24, "USD", 5.0),
    ("houston", 29.76, -95.37, "USD", 3.0),
    ("toronto", 43.65, -79.38, "CAD", 3.0),
    ("mexico_city", 19.43, -99.13, "MXN", 3.0),
    ("sao_paulo", -23.55, -46.63, "BRL", 3.0),
    ("london", 51.51, -0.13, "GBP", 6.0),
    ("paris", 48.86, 2.35, "EUR", 5.0),
    ("berlin", 52.52, 13.40, "EUR", 4.0),
    ("madrid", 40.42, -3.70, "EUR", 3.0),
    ("amsterdam", 52.37, 4.90, "EUR", 2.0),
    ("warsaw", 52.23, 21.01, "PLN", 2.0),
    ("istanbul", 41.01, 28.98, "TRY", 2.0),
    ("lagos", 6.52, 3.38, "NGN", 1.5),
    ("dubai", 25.20, 55.27, "AED", 1.5),
    ("mumbai", 19.08, 72.88, "INR", 3.0),
    ("singapore", 1.35, 103.82, "SGD", 2.0),
    ("tokyo", 35.68, 139.69, "JPY", 4.0),
    ("sydney", -33.87, 151.21, "AUD", 2.0),
)

# Approximate value of one unit of each currency in USD (a fixed table is enough
# to put amounts on one scale; it is not a pricing source).
USD_PER_UNIT: dict[str, float] = {
    "USD": 1.0,
    "CAD": 0.73,
    "MXN": 0.055,
    "BRL": 0.19,
    "GBP": 1.27,
    "EUR": 1.08,
    "PLN": 0.25,
    "TRY": 0.03,
    "NGN": 0.00065,
    "AED": 0.27,
    "INR": 0.012,
    "SGD": 0.74,
    "JPY": 0.0067,
    "AUD": 0.66,
}

_EARTH_RADIUS_KM = 6371.0


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2.0 * _EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def haversine_km_array(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """``haversine_km`` on arrays, operation for operation (the same doubles)."""
    p1 = np.radians(lat1)
    p2 = np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2.0 * _EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(a)))


def local_hour(ts_ms: int, lon: float) -> float:
    """Solar local hour of day (0..24) at longitude ``lon``: UTC shifted by lon/15 h."""
    utc_h = (ts_ms / 3_600_000.0) % 24.0
    return (utc_h + lon / 15.0) % 24.0


# Merchant category codes (ISO 18245) by fraud-risk group, as card issuers group them.
MCC_RISK: dict[str, str] = {
    # low: everyday, card-present spend
    "5411": "low",  # grocery
    "5541": "low",  # fuel
    "5812": "low",  # restaurants
    "5814": "low",  # fast food
    "4111": "low",  # commuter transport
    "4121": "low",  # taxis, ride hailing
    "5912": "low",  # pharmacies
    # medium: larger tickets, travel, general retail
    "5311": "medium",  # department stores
    "5651": "medium",  # clothing
    "5999": "medium",  # miscellaneous retail
    "4511": "medium",  # airlines
    "7011": "medium",  # hotels
    "5942": "medium",  # books
    "4814": "medium",  # telecom
    # high: resellable goods, cash and cash-like
    "5732": "high",  # electronics
    "5944": "high",  # jewellery
    "7995": "high",  # gambling
    "4829": "high",  # money transfer
    "6051": "high",  # quasi-cash, crypto
    "5967": "high",  # direct marketing, inbound telemarketing
    "6011": "high",  # ATM cash withdrawal
}

MCC_BY_RISK: dict[str, tuple[str, ...]] = {
    group: tuple(m for m, g in MCC_RISK.items() if g == group)
    for group in ("low", "medium", "high")
}
