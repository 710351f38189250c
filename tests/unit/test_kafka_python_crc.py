"""kafka-python checksums its records (CRC-32C) with the `crc32c` extension it recommends, not
its pure-Python fallback: on this machine the fallback was the bench producer's largest single
cost, and `hotline ingest` and `hotline feed` pay it on every record batch."""

from __future__ import annotations

from kafka.record import util
from kafka.record._crc32c import crc as pure_python_crc


def test_kafka_python_uses_the_c_checksum() -> None:
    assert util.crc32c_c is not None, "缺少 crc32c 包：请按 pyproject 安装 kafka-python[crc32c]"
    assert util.calc_crc32c.__defaults__ == (util.crc32c_c,)


def test_the_c_checksum_equals_the_reference() -> None:
    assert util.calc_crc32c(memoryview(b"123456789")) == 0xE3069283  # RFC 3720's check value
    batch = bytes(range(256)) * 41 + "工单".encode()
    assert util.calc_crc32c(memoryview(batch)) == pure_python_crc(batch)
