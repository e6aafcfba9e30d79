"""circhub: connections."""
