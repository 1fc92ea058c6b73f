"""KafkaSink: an idempotent producer with delivery callbacks and a transactional mode."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from streamfer.errors import StreamError
from streamfer.streams.client import (
    ClientFactory,
    DeliveryCallback,
    Headers,
    Outgoing,
    ProducerClient,
    ProducerOptions,
    TopicPartition,
    not_started,
)
from streamfer.streams.factory import client_factory
from streamfer.streams.settings import KafkaSettings
from streamfer.threadnames import name_this_thread

log = logging.getLogger(__name__)

_POLL_S = 0.05  # the delivery thread's wait per poll (librdkafka returns early on a report)


class KafkaSink:
    """Publishes messages; ``on_delivery(error, message)`` fires once per message.

    Where the client serves delivery reports only when polled (librdkafka), the
    sink runs a small *delivery thread* that polls from ``start()`` to
    ``close()``, so acknowledgements resolve records without any other thread's
    help (a consumer thread blocked in a revocation wait included).

    With ``options.transactional_id`` set, sends join a transaction begun on first
    use, and ``commit_transaction(positions, group_metadata)`` commits the sent
    messages together with the consumer offsets (exactly-once consume-transform-
    produce). ``send(..., only_if=check)`` evaluates ``check`` under the
    transaction lock, the lock ``abort_transaction(then=...)`` holds while it
    aborts and runs ``then``: a message whose source record an abort abandoned
    never opens the next transaction.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        options: ProducerOptions | None = None,
        factory: ClientFactory | None = None,
        thread_name: str = "kafka-deliveries",
    ) -> None:
        """``thread_name``: the delivery thread's, in Python and in the OS (``top -H``)."""
        self.settings = settings
        self.options = options or ProducerOptions()
        self._factory = factory
        self._client: ProducerClient | None = None
        self._txn_lock = threading.RLock()
        self._in_txn = False
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._thread_name = thread_name

    @property
    def transactional(self) -> bool:
        return self.options.transactional_id is not None

    @property
    def in_transaction(self) -> bool:
        return self._in_txn

    def start(self) -> KafkaSink:
        """Connect (StreamError within ``max_block_ms`` if no broker answers)."""
        if self._client is None:
            factory = self._factory or client_factory()
            self._client = factory.producer(self.settings, self.options)
            if self.transactional:
                self._client.init_transactions()
            if self._client.needs_polling:
                self._stop.clear()
                self._poller = threading.Thread(
                    target=self._serve_deliveries,
                    args=(self._client,),
                    name=self._thread_name,
                    daemon=True,
                )
                self._poller.start()
        return self

    def _serve_deliveries(self, client: ProducerClient) -> None:
        name_this_thread()
        while not self._stop.is_set():
            try:
                client.poll(_POLL_S)
            except Exception:  # a callback that raised: logged, the thread goes on
                log.exception("%s | a delivery callback failed", self.settings.describe())

    def __enter__(self) -> KafkaSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def client(self) -> ProducerClient:
        client = self._client
        if client is None:
            raise not_started(f"{self.settings.describe()} | KafkaSink")
        return client

    @property
    def monitor(self) -> object | None:
        """The producer's connection monitor (``streamfer.streams.connection``), once started."""
        return getattr(self._client, "monitor", None)

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Headers = (),
        on_delivery: DeliveryCallback | None = None,
        partition: int | None = None,
        only_if: Callable[[], bool] | None = None,
    ) -> bool:
        """Queue one message; StreamError if it cannot even be queued.

        ``only_if`` (e.g. "its source record is still pending") is checked first, under
        the transaction lock in transactional mode; False: nothing is sent.
        """
        out = Outgoing(
            topic=topic,
            values=(value,),
            keys=(key,),
            on_delivery=on_delivery,
            partition=partition,
            headers=(headers,) if headers else None,
        )
        return self._queue(only_if, lambda client: client.send_many(out))

    def send_many(self, out: Outgoing, only_if: Callable[[], bool] | None = None) -> bool:
        """Queue every message of ``out``, all under one ``only_if`` check (see ``send``)."""
        return self._queue(only_if, lambda client: client.send_many(out))

    def _queue(
        self, only_if: Callable[[], bool] | None, enqueue: Callable[[ProducerClient], None]
    ) -> bool:
        """``enqueue(client)`` if ``only_if`` holds; in transactional mode both under the
        transaction lock, inside the open transaction (begun here if none is)."""
        client = self.client
        if not self.transactional:
            if only_if is not None and not only_if():
                return False
            enqueue(client)
            return True
        with self._txn_lock:
            if only_if is not None and not only_if():
                return False
            self._begin(client)
            enqueue(client)
            return True

    def _begin(self, client: ProducerClient) -> None:  # under the transaction lock
        if not self._in_txn:
            client.begin_transaction()
            self._in_txn = True

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every queued message is acknowledged or failed."""
        self.client.flush(timeout_s)

    def commit_transaction(
        self, positions: Mapping[TopicPartition, int], group_metadata: object
    ) -> None:
        """Commit sent messages and consumer ``positions`` atomically (transactional mode)."""
        self._need_transactions("commit_transaction")
        client = self.client
        with self._txn_lock:
            if not self._in_txn:
                if not positions:
                    return
                self._begin(client)
            client.flush(self.options.transaction_timeout_ms / 1000)
            if positions:
                client.send_offsets_to_transaction(positions, group_metadata)
            client.commit_transaction()
            self._in_txn = False

    def abort_transaction(self, then: Callable[[], object] | None = None) -> None:
        """Abort the open transaction, if any: its messages stay invisible to read_committed.

        ``then`` runs under the same lock right after (also when the abort fails), so no
        ``send(..., only_if=...)`` interleaves between the abort and it.
        """
        self._need_transactions("abort_transaction")
        with self._txn_lock:
            try:
                if self._in_txn:
                    self._in_txn = False
                    self.client.abort_transaction()
            finally:
                if then is not None:
                    then()

    def _need_transactions(self, what: str) -> None:
        if not self.transactional:
            raise StreamError(
                f"{self.settings.describe()} | {what} on a non-transactional sink. "
                "Note: set ProducerOptions.transactional_id"
            )

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is queued (an open transaction is aborted) and disconnect."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if self._in_txn:
                self._in_txn = False
                client.abort_transaction()
            try:
                client.flush(timeout_s)
            except StreamError as exc:
                log.warning("%s | closing: %s", self.settings.describe(), exc)
        finally:
            self._stop.set()
            if self._poller is not None:
                self._poller.join()
                self._poller = None
            client.close(timeout_s)
