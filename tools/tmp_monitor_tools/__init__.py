"""tmp_monitor_tools."""
