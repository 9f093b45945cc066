"""Entry script that runs the monitor under cProfile (bench/profile.py, never the benchmark).

Like monitor_probe.py it runs the layer's real bootstrap (renamed bootstrap_monitor.py) in this
interpreter; at exit it writes the main thread's profile on stderr, by own and by cumulative
time. The main thread is where the monitor samples, walks, purges and writes documents.
"""

import cProfile
import io
import os
import pstats
import sys
import time

_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap_monitor.py")
with open(_path, encoding="utf-8") as _source:
    _code = compile(_source.read(), _path, "exec")
# Thread CPU time, not wall time: under the sandbox's CPU quota, wall time is mostly waiting.
_profile = cProfile.Profile(time.thread_time)
try:
    _profile.enable()
    exec(_code, {"__name__": "__main__", "__file__": _path})
finally:
    _profile.disable()
    _out = io.StringIO()
    _stats = pstats.Stats(_profile, stream=_out)
    _stats.sort_stats("tottime").print_stats(30)
    _stats.sort_stats("cumulative").print_stats(40)
    sys.stderr.write("BENCH profile\n" + _out.getvalue())
