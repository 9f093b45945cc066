"""The platform.* Telemetry API records, shaped as Lambda sends them (schema 2022-12-13)."""

from __future__ import annotations

import secrets
from typing import Any

from lambda_sandbox.logs import Report, iso_time

Record = dict[str, Any]
INIT_TYPE = "on-demand"


def event(event_type: str, record: Any, epoch_s: float) -> dict[str, Any]:
    return {"time": iso_time(epoch_s), "type": event_type, "record": record}


def span(name: str, start_epoch_s: float, duration_ms: float) -> Record:
    return {"name": name, "start": iso_time(start_epoch_s), "durationMs": round(duration_ms, 3)}


def init_start(function_name: str, runtime_version: str, runtime_arn: str) -> Record:
    return {
        "initializationType": INIT_TYPE,
        "phase": "init",
        "runtimeVersion": runtime_version,
        "runtimeVersionArn": runtime_arn,
        "functionName": function_name,
        "functionVersion": "$LATEST",
    }


def init_runtime_done(status: str, error_type: str = "") -> Record:
    record: Record = {"initializationType": INIT_TYPE, "phase": "init", "status": status}
    if error_type:
        record["errorType"] = error_type
    return record


def init_report(duration_ms: float, status: str, error_type: str = "") -> Record:
    record = init_runtime_done(status, error_type)
    record["metrics"] = {"durationMs": round(duration_ms, 3)}
    return record


def extension(name: str, events: tuple[str, ...]) -> Record:
    return {"name": name, "state": "Ready", "events": list(events)}


def telemetry_subscription(name: str, types: tuple[str, ...]) -> Record:
    return {"name": name, "state": "Subscribed", "types": list(types)}


def logs_dropped(subscriber: str, count: int, size: int) -> Record:
    return {
        "reason": f"Subscriber {subscriber} did not accept a batch after every retry",
        "droppedRecords": count,
        "droppedBytes": size,
    }


def trace_id(epoch: float) -> str:
    """An X-Ray trace header as Lambda sends one with every invocation (tracing off: Sampled=0)."""
    return (
        f"Root=1-{int(epoch):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0"
    )


def start(request_id: str, trace_id: str = "") -> Record:
    record: Record = {"requestId": request_id, "version": "$LATEST"}
    if trace_id:
        record["tracing"] = {"type": "X-Amzn-Trace-Id", "value": trace_id}
    return record


def runtime_done(
    request_id: str,
    status: str,
    duration_ms: float,
    produced_bytes: int,
    spans: list[Record],
    error_type: str = "",
) -> Record:
    record: Record = {
        "requestId": request_id,
        "status": status,
        "metrics": {"durationMs": round(duration_ms, 3), "producedBytes": produced_bytes},
        "spans": spans,
    }
    if error_type:
        record["errorType"] = error_type
    return record


def report(rep: Report, spans: list[Record]) -> Record:
    metrics: Record = {
        "durationMs": round(rep.duration_ms, 3),
        "billedDurationMs": rep.billed_ms,
        "memorySizeMB": rep.memory_mb,
        "maxMemoryUsedMB": rep.max_memory_used_mb,
    }
    if rep.init_duration_ms is not None:
        metrics["initDurationMs"] = round(rep.init_duration_ms, 3)
    record: Record = {
        "requestId": rep.request_id,
        "status": rep.status,
        "metrics": metrics,
        "spans": spans,
    }
    if rep.error_type:
        record["errorType"] = rep.error_type
    return record
