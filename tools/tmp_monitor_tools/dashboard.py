"""The CloudWatch dashboard of one function, built from the names the monitor emits.

Only the core set is made of CloudWatch metrics by default (SPEC 5, `TMP_MONITOR_METRICS`); the
`all` set's figures are then plain log properties. So the default dashboard charts core metrics
only and reads the monitor's own time (`PostRuntimeMs`, `ExtensionOverheadMs`) from the log
group with Logs Insights; `metrics="all"` charts those as metrics and adds the widgets of the
other `all`-set metrics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from tmp_monitor import names

MIB = 1048576
PERIOD = 60
SHARE_ALARM_PERCENT = 50
DIMENSION_CHOICES = (
    (names.DIM_FUNCTION_NAME,),
    (names.DIM_FUNCTION_NAME, names.DIM_FUNCTION_VERSION),
)


@dataclass(frozen=True)
class Config:
    """What the monitor is configured with, and where the function is."""

    function_name: str
    region: str
    namespace: str = names.DEFAULT_NAMESPACE
    dimensions: tuple[str, ...] = (names.DIM_FUNCTION_NAME,)
    function_version: str | None = None
    metrics: str = "core"
    memory_size_mb: int | None = None
    log_group: str | None = None

    def __post_init__(self) -> None:
        if self.dimensions not in DIMENSION_CHOICES:
            raise ValueError(
                f"dimensions {','.join(self.dimensions)!r}: the monitor emits FunctionName or "
                "FunctionName,FunctionVersion"
            )
        if self.function_version is not None and names.DIM_FUNCTION_VERSION not in self.dimensions:
            raise ValueError(
                "a function version needs dimensions FunctionName,FunctionVersion (the monitor "
                "emits the FunctionVersion dimension only with TMP_MONITOR_DIMENSIONS set so)"
            )
        if self.metrics not in ("core", "all"):
            raise ValueError(f"metrics {self.metrics!r}: core or all")
        if not 1 <= len(self.namespace) <= 255:
            raise ValueError("the namespace must be 1 to 255 characters")


def default_name(config: Config) -> str:
    """`tmp-monitor-<function>[-<version>]`, in the characters dashboard names allow."""
    parts = ["tmp-monitor", config.function_name]
    if config.function_version is not None:
        parts.append(config.function_version)
    return re.sub(r"[^A-Za-z0-9_-]", "", "-".join(parts))[:255]


class _Metrics:
    """Metric entries of one widget: plain metrics and metric math, ids unique per widget."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self.entries: list[list[Any]] = []

    def _dimensions(self) -> list[str]:
        dims = [names.DIM_FUNCTION_NAME, self._config.function_name]
        if self._config.function_version is not None:
            dims += [names.DIM_FUNCTION_VERSION, self._config.function_version]
        return dims

    def metric(self, name: str, **options: Any) -> None:
        self.entries.append([self._config.namespace, name, *self._dimensions(), options])

    def mib(self, name: str, label: str, stat: str = "Maximum", **options: Any) -> None:
        """A byte metric shown in MiB: the raw metric hidden, a math expression drawn."""
        raw = f"m{len(self.entries)}"
        self.metric(name, id=raw, stat=stat, visible=False)
        self.entries.append(
            [{"expression": f"{raw}/{MIB}", "label": label, "id": f"e{raw[1:]}", **options}]
        )


def _widget(config: Config, title: str, metrics: _Metrics, **properties: Any) -> dict[str, Any]:
    return {
        "type": "metric",
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "region": config.region,
            "view": "timeSeries",
            "stacked": False,
            "period": PERIOD,
            "stat": "Maximum",
            "metrics": metrics.entries,
            **properties,
        },
    }


def _memory(config: Config) -> dict[str, Any]:
    m = _Metrics(config)
    m.metric(names.MAX_MEMORY_USED_MB, label="Max Memory Used")
    m.mib(names.FUNCTION_RSS_BYTES, "function RSS")
    m.mib(names.TMP_RESIDENT_BYTES, "/tmp resident")
    m.mib(names.EXTENSION_RSS_BYTES, "monitor RSS")
    if config.metrics == "all":
        m.mib(names.SANDBOX_MEMORY_BYTES, "environment memory (cgroup)")
        m.metric(names.MEMORY_SIZE_MB, label="memory size")
    extra: dict[str, Any] = {}
    if config.memory_size_mb is not None:
        line = {"label": "memory size", "value": config.memory_size_mb}
        extra["annotations"] = {"horizontal": [line]}
    return _widget(
        config,
        "Max Memory Used and its parts (MiB)",
        m,
        yAxis={"left": {"min": 0, "label": "MiB", "showUnits": False}},
        **extra,
    )


def _tmp(config: Config) -> dict[str, Any]:
    m = _Metrics(config)
    m.mib(names.TMP_USED_BYTES, "/tmp used")
    m.mib(names.TMP_PEAK_BYTES, "/tmp peak")
    if config.metrics == "all":
        m.mib(names.TMP_FREE_BYTES, "/tmp free")
    return _widget(
        config,
        "/tmp used and peak (MiB)",
        m,
        yAxis={"left": {"min": 0, "label": "MiB", "showUnits": False}},
    )


def _purged(config: Config) -> dict[str, Any]:
    m = _Metrics(config)
    m.mib(names.PURGED_BYTES, "purged (per minute)", stat="Sum")
    m.metric(names.PURGED_FILES, stat="Sum", label="files purged", yAxis="right")
    return _widget(
        config,
        "Purged from /tmp (MiB)",
        m,
        yAxis={"left": {"min": 0, "label": "MiB", "showUnits": False}, "right": {"min": 0}},
    )


def _cost(config: Config) -> dict[str, Any]:
    m = _Metrics(config)
    m.mib(names.EXTENSION_RSS_BYTES, "monitor RSS (MiB)")
    if config.metrics == "all":
        m.metric(names.POST_RUNTIME_MS, stat="p99", label="post-runtime p99 (ms)", yAxis="right")
        m.metric(
            names.EXTENSION_OVERHEAD_MS, stat="p50", label="extension overhead p50", yAxis="right"
        )
        m.metric(
            names.EXTENSION_OVERHEAD_MS, stat="p99", label="extension overhead p99", yAxis="right"
        )
    return _widget(
        config,
        "The monitor's own cost",
        m,
        yAxis={"left": {"min": 0, "label": "MiB", "showUnits": False}, "right": {"min": 0}},
    )


def log_group(config: Config) -> str:
    return config.log_group or f"/aws/lambda/{config.function_name}"


def _cost_from_logs(config: Config) -> dict[str, Any]:
    """The monitor's time, from the log properties the core set leaves out of CloudWatch."""
    version = (
        f' and {names.PROP_FUNCTION_VERSION} = "{config.function_version}"'
        if config.function_version is not None
        else ""
    )
    query = (
        f"SOURCE '{log_group(config)}'"
        f" | filter (ispresent({names.POST_RUNTIME_MS})"
        f" or ispresent({names.EXTENSION_OVERHEAD_MS})){version}"
        f" | stats avg({names.POST_RUNTIME_MS}) as post_runtime_avg_ms,"
        f" max({names.POST_RUNTIME_MS}) as post_runtime_max_ms,"
        f" avg({names.EXTENSION_OVERHEAD_MS}) as overhead_avg_ms,"
        f" max({names.EXTENSION_OVERHEAD_MS}) as overhead_max_ms by bin(5m)"
    )
    return {
        "type": "log",
        "width": 12,
        "height": 6,
        "properties": {
            "title": "The monitor's own time (ms, from the logs)",
            "region": config.region,
            "view": "timeSeries",
            "stacked": False,
            "query": query,
        },
    }


def _share(config: Config) -> dict[str, Any]:
    m = _Metrics(config)
    m.metric(names.TMP_SHARE_OF_MAX_MEMORY, stat="Maximum", label="max")
    m.metric(names.TMP_SHARE_OF_MAX_MEMORY, stat="Average", label="average")
    return _widget(
        config,
        "/tmp share of Max Memory Used (%)",
        m,
        yAxis={"left": {"min": 0, "max": 100, "label": "%", "showUnits": False}},
        annotations={
            "horizontal": [{"label": "suggested alarm", "value": SHARE_ALARM_PERCENT}],
        },
    )


def _environments(config: Config) -> dict[str, Any]:
    m = _Metrics(config)
    m.metric(names.INVOCATIONS, stat="Sum", label="invocations of environments shut down")
    m.metric(names.REPORTS_MISSING, stat="Sum", label="platform reports missing")
    m.mib(names.LIFETIME_TMP_PEAK_BYTES, "lifetime /tmp peak (MiB)", yAxis="right")
    m.mib(names.LIFETIME_PURGED_BYTES, "lifetime purged (MiB)", stat="Sum", yAxis="right")
    return _widget(
        config,
        "Environments at shutdown",
        m,
        yAxis={"left": {"min": 0}, "right": {"min": 0, "label": "MiB", "showUnits": False}},
    )


def _durations(config: Config) -> dict[str, Any]:
    m = _Metrics(config)
    m.metric(names.DURATION_MS, stat="p50", label="duration p50")
    m.metric(names.DURATION_MS, stat="p99", label="duration p99")
    m.metric(names.BILLED_DURATION_MS, stat="p99", label="billed duration p99")
    m.metric(names.INIT_DURATION_MS, stat="Maximum", label="init duration (cold starts)")
    m.metric(names.COLD_START, stat="Sum", label="cold starts", yAxis="right")
    return _widget(
        config, "Duration and cold starts (ms)", m, yAxis={"left": {"min": 0}, "right": {"min": 0}}
    )


def _tmp_changes(config: Config) -> dict[str, Any]:
    m = _Metrics(config)
    m.mib(names.TMP_DELTA_BYTES, "/tmp change per invocation (max)")
    m.mib(names.TMP_DELTA_BYTES, "/tmp change per invocation (sum)", stat="Sum")
    m.metric(names.TMP_FILES, stat="Maximum", label="files in /tmp", yAxis="right")
    return _widget(
        config,
        "/tmp growth and files (MiB)",
        m,
        yAxis={"left": {"label": "MiB", "showUnits": False}, "right": {"min": 0}},
    )


def _text(config: Config) -> dict[str, Any]:
    own_time = (
        "`PostRuntimeMs` and `ExtensionOverheadMs` (metrics, `TMP_MONITOR_METRICS=all`)"
        if config.metrics == "all"
        else "`PostRuntimeMs` and `ExtensionOverheadMs`, read from the log group with Logs "
        "Insights: with the default `TMP_MONITOR_METRICS=core` they are log properties, not "
        "metrics (set `TMP_MONITOR_METRICS=all` and rebuild with `--metrics all` to chart them "
        "as metrics, at the price of more custom metrics)"
    )
    dims = ", ".join(
        f"{k}={v}"
        for k, v in zip(
            config.dimensions,
            [config.function_name, config.function_version or "any"],
            strict=False,
        )
    )
    markdown = "\n".join(
        [
            f"## tmp-monitor: {config.function_name}",
            f"Namespace `{config.namespace}`, dimensions {dims}. One data point per invocation.",
            "",
            "* **Max Memory Used and its parts**: the platform's lifetime high-water mark of the "
            "environment against what the monitor measured at the end of each invocation: the "
            "function's processes (RSS), the page cache of `/tmp` files (resident), the monitor "
            "itself. Whatever Max Memory Used holds above their sum is runtime and kernel memory "
            "or a peak between samples.",
            "* **/tmp used and peak**: allocated bytes at the end of the runtime, and the largest "
            "use seen during it (short-lived files included).",
            "* **Purged**: what `TMP_MONITOR_PURGE` freed after each invocation (empty while the "
            "purge is off).",
            f"* **The monitor's own cost**: its RSS (`ExtensionRssBytes`), and {own_time}.",
            "* **/tmp share**: `TmpResidentBytes` over Max Memory Used of the same invocation. A "
            f"share that stays above {SHARE_ALARM_PERCENT} % means `/tmp` is what fills the "
            "memory: purge it, or delete files in the function.",
            "* **Environments at shutdown**: one point per environment that shut down; "
            "*reports missing* counts invocations whose platform report never came (timeouts, "
            "out-of-memory kills).",
        ]
    )
    return {"type": "text", "width": 24, "height": 7, "properties": {"markdown": markdown}}


def build_body(config: Config) -> dict[str, Any]:
    """The dashboard body (a JSON object; `put_dashboard` takes it serialized)."""
    widgets = [
        _text(config),
        _memory(config),
        _share(config),
        _tmp(config),
        _purged(config),
        _cost(config),
        _cost_from_logs(config) if config.metrics == "core" else _durations(config),
        _environments(config),
    ]
    if config.metrics == "all":
        widgets.append(_tmp_changes(config))
    x = y = 0
    for widget in widgets:
        if x + widget["width"] > 24:
            x, y = 0, y + 6
        widget["x"], widget["y"] = x, y
        x += widget["width"]
        if widget["width"] == 24:
            x, y = 0, y + widget["height"]
    return {"start": "-PT3H", "periodOverride": "inherit", "widgets": widgets}


class CloudWatchClient(Protocol):
    def put_dashboard(self, *, DashboardName: str, DashboardBody: str) -> dict[str, Any]: ...


def put(client: CloudWatchClient, name: str, body_json: str) -> list[str]:
    """Create or update the dashboard; the validation messages CloudWatch returns."""
    answer = client.put_dashboard(DashboardName=name, DashboardBody=body_json)
    return [
        f"{m.get('DataPath', '')}: {m.get('Message', '')}"
        for m in answer.get("DashboardValidationMessages", [])
    ]


def console_url(region: str, name: str) -> str:
    return f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#dashboards:name={name}"
