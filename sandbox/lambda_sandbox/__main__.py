"""`python -m lambda_sandbox` is `lambda-sandbox`."""

import sys

from lambda_sandbox.cli import main

sys.exit(main())
