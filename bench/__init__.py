"""`make bench`: circhub's throughput measured against this machine's own limits."""
