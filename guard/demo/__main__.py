"""``python -m guard.demo``: run the demo customer-records MCP server (stdio by default)."""

import sys

from guard.demo.server import main

sys.exit(main())
