"""Public names: metric names, units, properties and environment variables (SPEC sections 4-6).

Dashboards, alarms and users' scripts depend on these strings; change none of them lightly.
"""

from __future__ import annotations

from typing import Final

EXTENSION_NAME: Final = "tmp-monitor"
DEFAULT_NAMESPACE: Final = "TmpMonitor"

# Dimensions
DIM_FUNCTION_NAME: Final = "FunctionName"
DIM_FUNCTION_VERSION: Final = "FunctionVersion"

# The invocation document
TMP_USED_BYTES: Final = "TmpUsedBytes"
TMP_PEAK_BYTES: Final = "TmpPeakBytes"
TMP_DELTA_BYTES: Final = "TmpDeltaBytes"
TMP_FILES: Final = "TmpFiles"
TMP_FREE_BYTES: Final = "TmpFreeBytes"
TMP_RESIDENT_BYTES: Final = "TmpResidentBytes"
FUNCTION_RSS_BYTES: Final = "FunctionRssBytes"
SANDBOX_MEMORY_BYTES: Final = "SandboxMemoryBytes"
EXTENSION_RSS_BYTES: Final = "ExtensionRssBytes"
POST_RUNTIME_MS: Final = "PostRuntimeMs"
PURGED_BYTES: Final = "PurgedBytes"
PURGED_FILES: Final = "PurgedFiles"
COLD_START: Final = "ColdStart"

# The report document
MAX_MEMORY_USED_MB: Final = "MaxMemoryUsedMB"
MEMORY_SIZE_MB: Final = "MemorySizeMB"
DURATION_MS: Final = "DurationMs"
BILLED_DURATION_MS: Final = "BilledDurationMs"
INIT_DURATION_MS: Final = "InitDurationMs"
EXTENSION_OVERHEAD_MS: Final = "ExtensionOverheadMs"
TMP_SHARE_OF_MAX_MEMORY: Final = "TmpShareOfMaxMemory"

# The summary document
INVOCATIONS: Final = "Invocations"
LIFETIME_TMP_PEAK_BYTES: Final = "LifetimeTmpPeakBytes"
LIFETIME_PURGED_BYTES: Final = "LifetimePurgedBytes"
REPORTS_MISSING: Final = "ReportsMissing"

# Properties (log members, not metrics)
PROP_REQUEST_ID: Final = "requestId"
PROP_INVOCATION: Final = "invocation"
PROP_ENVIRONMENT_AGE_MS: Final = "environmentAgeMs"
PROP_FUNCTION_VERSION: Final = "functionVersion"
PROP_MONITOR_VERSION: Final = "monitorVersion"
PROP_TOP_FILES: Final = "topFiles"
PROP_MEMORY_SOURCE: Final = "memorySource"
PROP_PURGED_BUT_OPEN: Final = "purgedButOpen"
PROP_SHUTDOWN_REASON: Final = "shutdownReason"
PROP_DOCUMENT: Final = "document"  # "invocation", "report" or "summary"
PROP_ERRORS: Final = "errors"  # errors contained so far (sampling, emitting, out-of-order events)
PROP_FALLBACK: Final = "fallback"  # why an invocation document closed without runtimeDone
PROP_RUNTIME_DONE_MISSING: Final = "runtimeDoneMissing"  # summary: invocations closed that way
PROP_RUNTIME_STATUS: Final = "status"  # runtimeDone / report status (success, error, timeout...)
PROP_SAMPLES: Final = "samples"  # sampler ticks that went into the document

# Values of PROP_DOCUMENT
DOC_INVOCATION: Final = "invocation"
DOC_REPORT: Final = "report"
DOC_SUMMARY: Final = "summary"
DOC_ENVIRONMENT: Final = "environment"  # multi-concurrency mode: environment-level samples

# Metric units, as EMF spells them
BYTES: Final = "Bytes"
COUNT: Final = "Count"
MILLISECONDS: Final = "Milliseconds"
MEGABYTES: Final = "Megabytes"
PERCENT: Final = "Percent"

# name -> (unit, in the core set). Metrics outside the core set are written as plain
# properties unless TMP_MONITOR_METRICS=all.
INVOCATION_METRICS: Final[dict[str, tuple[str, bool]]] = {
    TMP_USED_BYTES: (BYTES, True),
    TMP_PEAK_BYTES: (BYTES, True),
    TMP_DELTA_BYTES: (BYTES, False),
    TMP_FILES: (COUNT, False),
    TMP_FREE_BYTES: (BYTES, False),
    TMP_RESIDENT_BYTES: (BYTES, True),
    FUNCTION_RSS_BYTES: (BYTES, True),
    SANDBOX_MEMORY_BYTES: (BYTES, False),
    EXTENSION_RSS_BYTES: (BYTES, True),
    POST_RUNTIME_MS: (MILLISECONDS, False),
    PURGED_BYTES: (BYTES, True),  # core only while the purge is on
    PURGED_FILES: (COUNT, True),  # core only while the purge is on
    COLD_START: (COUNT, False),
}
REPORT_METRICS: Final[dict[str, tuple[str, bool]]] = {
    MAX_MEMORY_USED_MB: (MEGABYTES, True),
    MEMORY_SIZE_MB: (MEGABYTES, False),
    DURATION_MS: (MILLISECONDS, False),
    BILLED_DURATION_MS: (MILLISECONDS, False),
    INIT_DURATION_MS: (MILLISECONDS, False),
    EXTENSION_OVERHEAD_MS: (MILLISECONDS, False),
    TMP_SHARE_OF_MAX_MEMORY: (PERCENT, True),
}
SUMMARY_METRICS: Final[dict[str, tuple[str, bool]]] = {
    INVOCATIONS: (COUNT, True),
    LIFETIME_TMP_PEAK_BYTES: (BYTES, True),
    LIFETIME_PURGED_BYTES: (BYTES, True),
    REPORTS_MISSING: (COUNT, True),
}

# Environment variables of the function that configure the monitor (SPEC section 5)
ENV_DISABLED: Final = "TMP_MONITOR_DISABLED"
ENV_NAMESPACE: Final = "TMP_MONITOR_NAMESPACE"
ENV_DIMENSIONS: Final = "TMP_MONITOR_DIMENSIONS"
ENV_SAMPLE_MS: Final = "TMP_MONITOR_SAMPLE_MS"
ENV_PURGE: Final = "TMP_MONITOR_PURGE"
ENV_PURGE_THRESHOLD_MB: Final = "TMP_MONITOR_PURGE_THRESHOLD_MB"
ENV_KEEP: Final = "TMP_MONITOR_KEEP"
ENV_DRY_RUN: Final = "TMP_MONITOR_DRY_RUN"
ENV_TOP_FILES: Final = "TMP_MONITOR_TOP_FILES"
ENV_METRICS: Final = "TMP_MONITOR_METRICS"
ENV_LOG_LEVEL: Final = "TMP_MONITOR_LOG_LEVEL"
