"""Where a learning report's data comes from: a simulator run (live or saved), a JSON-lines log,
the rewards topic."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from tracker.settings import Settings


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file (blank lines skipped); errors name the line."""
    records = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON: {exc}") from exc
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: a JSON object was expected")
            records.append(record)
    return records


def read_simulation(path: Path) -> dict[str, Any]:
    """The first run of a saved simulator report (``{"runs": [report, ...]}``, as written by
    ``bench/learning_curve.py`` and ``bench/learning_pipeline.py``), or a single report."""
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from exc
    runs = data.get("runs") if isinstance(data, dict) else None
    report = runs[0] if isinstance(runs, list) and runs else data
    if not isinstance(report, dict) or not {"config", "curves", "checkpoint"} <= report.keys():
        raise ValueError(
            f"{path}: not a simulator report (expected the JSON of bench/learning_curve.py "
            "or bench/learning_pipeline.py)"
        )
    return report


def write_jsonl(records: Iterable[Mapping[str, Any]], path: Path) -> int:
    """Write ``records`` one JSON object a line; returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("wb") as out:
        for record in records:
            out.write(orjson.dumps(record) + b"\n")
            count += 1
    return count


def read_rewards_topic(settings: Settings, *, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every record of the worker's rewards topic (``<worker_app_id>-rewards``), from the first to
    the end offsets as they are when reading starts. Reads without a consumer group (commits nothing)."""
    from kafka import KafkaConsumer, TopicPartition

    from tracker.streams.app import rewards_topic_name

    topic = rewards_topic_name(settings)
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None
    )
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ValueError(f"topic {topic!r} does not exist on {settings.kafka_bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic!r} to its end within {timeout:g} s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(orjson.loads(message.value) for message in batch)
        return records
    finally:
        consumer.close()
