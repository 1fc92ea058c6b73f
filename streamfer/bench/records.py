"""The records the benchmarks send: reference transactions and camera frames.

Pools are built once per run with fixed seeds, so every system under test
sees the same bytes. ``(key, value, headers)`` triples, as Kafka takes them.
"""

from __future__ import annotations

from streamfer.bench.kafka_io import Headers

PoolItem = tuple[bytes | None, bytes, Headers]


def transaction_pool(size: int, seed: int = 0) -> list[PoolItem]:
    """``size`` transactions from the reference generator, JSON-encoded, keyed by card id."""
    from streamfer.models.generators.transactions import TransactionGenerator
    from streamfer.streams.codecs import encode_transaction

    gen = TransactionGenerator(seed=seed)
    out: list[PoolItem] = []
    for _ in range(size):
        tx, _fraud = gen.next()
        value = encode_transaction(tx)
        out.append((str(tx["card_id"]).encode(), value, []))
    return out


def camera_pool(size: int, seed: int = 0, n_cameras: int = 4) -> list[PoolItem]:
    """``size`` rendered 640x360 scenes as JPEG, keyed by camera id (headers set per send)."""
    from streamfer.models.generators.scenes import SceneGenerator
    from streamfer.streams.codecs import encode_camera

    gen = SceneGenerator(seed=seed)
    out: list[PoolItem] = []
    for i in range(size):
        cam = i % n_cameras
        value, headers = encode_camera(gen.render(camera_id=cam).image)
        out.append((f"cam-{cam}".encode(), value, headers))
    return out


def camera_headers(item: PoolItem, capture_wall_ns: int, seq: int) -> Headers:
    """Headers of one frame captured at ``capture_wall_ns`` (epoch ns) with sequence ``seq``."""
    return [
        *[(k, v) for k, v in item[2] if k == "content-type"],
        ("capture-ts-ns", str(capture_wall_ns).encode()),
        ("frame-seq", str(seq).encode()),
    ]


def stamped(items: list[PoolItem], n: int) -> list[PoolItem]:
    """``n`` frames cycling through ``items``, captured now, with sequence numbers."""
    import time

    now = time.time_ns()
    return [
        (items[i % len(items)][0], items[i % len(items)][1],
         camera_headers(items[i % len(items)], now, i))
        for i in range(n)
    ]  # fmt: skip
