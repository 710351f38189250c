"""Kafka readiness probe (就绪检查): succeed once a client can list topics on the broker.

Used by `kafka.sh wait` and `kafka.sh status`. Readiness is judged through a real client
call (kafka-python `KafkaAdminClient.list_topics()`), never by reading the broker log.

Exit codes: 0 ready, 1 not ready before the timeout, 2 the broker process is gone,
3 kafka-python is not installed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

EXIT_READY = 0
EXIT_TIMEOUT = 1
EXIT_DIED = 2
EXIT_NO_CLIENT = 3


def _process_alive(pid: int) -> bool:
    """True when a process with this id exists (signal 0 probes without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_topics_once(bootstrap: str, request_timeout_ms: int = 5000) -> list[str]:
    """One admin round trip; raises whatever kafka-python raises when the broker is not up."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="hotline-ready-probe",
        request_timeout_ms=request_timeout_ms,
        bootstrap_timeout_ms=request_timeout_ms,
    )
    try:
        return list(admin.list_topics())
    finally:
        admin.close()


def wait_ready(bootstrap: str, timeout_s: float, pid: int | None = None) -> int:
    """Retry `list_topics_once` until it succeeds, the timeout passes or the broker dies."""
    deadline = time.monotonic() + timeout_s
    attempt = 0
    last_error = "no attempt made"
    while True:
        attempt += 1
        if pid is not None and not _process_alive(pid):
            print(f"kafka: broker process {pid} exited before becoming ready", file=sys.stderr)
            return EXIT_DIED
        try:
            topics = list_topics_once(bootstrap)
        except Exception as exc:  # any client error means "not ready yet"; retried below
            last_error = f"{type(exc).__name__}: {exc}"
        else:
            print(f"kafka: ready at {bootstrap} after {attempt} attempt(s), {len(topics)} topic(s)")
            return EXIT_READY
        if time.monotonic() >= deadline:
            print(
                f"kafka: not ready at {bootstrap} after {timeout_s:.0f} s "
                f"({attempt} attempts); last error: {last_error}",
                file=sys.stderr,
            )
            return EXIT_TIMEOUT
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to keep trying")
    parser.add_argument("--pid", type=int, default=None, help="broker pid; stop early if it dies")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)  # kafka-python logs every refused connection
    try:
        import kafka  # noqa: F401
    except ImportError:
        print("kafka: kafka-python is not installed in this Python", file=sys.stderr)
        return EXIT_NO_CLIENT
    return wait_ready(args.bootstrap, args.timeout, args.pid)


if __name__ == "__main__":
    sys.exit(main())
