"""Where an order lives on Kafka (分区): its enterprise's home partition.

The repeat-complaint table is keyed by enterprise (`enterprise_key`), and faust writes a table
entry to the changelog partition of the event being handled, so one enterprise's orders must
all be handled from one partition number: the enterprise's *home partition*, the partition
Kafka's default partitioner (murmur2 of the key, as in the Java client, kafka-python and
aiokafka) gives its key.

`hotline ingest` sends each valid order to `workorders.received` on its enterprise's home
partition, still keyed by order id. The worker routes such an order straight from
`workorders.received`. An order from any other producer (default partitioner on the order
id) lands on some other partition: the worker forwards it to `workorders.by-enterprise`, keyed
by its enterprise, and routes it from there. Both topics have the same partition count and are
assigned together, so partition p of either and of the table's changelog belong to one worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kafka.partitioner.default import murmur2

from models.records import OrderIn
from streams.intake import IntakeError, normalize


def enterprise_key(order: OrderIn) -> str:
    """Orders of one enterprise meet in one partition (统一社会信用代码, else its name)."""
    if order.credit_code:
        return f"code:{order.credit_code}"
    if order.enterprise_name:
        return f"name:{order.enterprise_name}"
    return f"order:{order.order_id}"


def has_enterprise(key: str) -> bool:
    """Whether an `enterprise_key` names an enterprise (an order of none has no table entry)."""
    return not key.startswith("order:")


def home_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` among `partitions`."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


def intake_partition(
    raw: bytes | str | Mapping[str, Any], partitions: int, *, max_text_chars: int
) -> int | None:
    """The home partition of a raw intake message's enterprise, read the way the worker reads
    the message (`streams.intake.normalize`); None for a message the worker will dead-letter
    (it may go anywhere: the worker reports it with its reason)."""
    try:
        order = normalize(raw, max_text_chars=max_text_chars)
    except IntakeError:
        return None
    except Exception:  # noqa: BLE001 - a validation bug: the worker dead-letters it too
        return None
    return home_partition(enterprise_key(order), partitions)
