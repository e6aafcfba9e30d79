"""circhub: circhub."""
