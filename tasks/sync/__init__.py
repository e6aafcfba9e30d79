"""circhub: tasks — sync."""
