"""`make bench`: circhub's throughput measured against this machine's own limits."""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no outbound network here
os.environ.setdefault("DO_NOT_TRACK", "1")
