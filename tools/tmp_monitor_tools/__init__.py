"""tmp-monitor on the user's machine: `tmp-monitor report` and `tmp-monitor dashboard`.

`sources` reads what the monitor wrote, `report` joins it into one row per invocation, `chart`
draws the rows, `dashboard` builds the CloudWatch dashboard, `cli` is the command. They share
nothing with the extension but its public names (`tmp_monitor.names`).
"""

__all__ = ["chart", "cli", "dashboard", "report", "sources"]
