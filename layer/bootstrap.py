"""Entry script of the layer (/opt/tmp-monitor/bootstrap.py), started by the launcher.

The interpreter runs isolated (-I -S), so nothing of the function's environment reaches sys.path;
this puts the layer's own site directory, next to this file, in front of the standard library.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "site"))

from tmp_monitor.__main__ import main

sys.exit(main())
