"""circhub: simulator."""
