"""circhub: tasks — writeback."""
