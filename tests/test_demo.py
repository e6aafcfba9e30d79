"""`circhub demo`'s story, at a small size, on a real Prefect server."""

from __future__ import annotations

import pytest
from rich.console import Console

from circhub.demo import DemoSize, tell

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_the_demo_tells_the_story_and_its_last_sync_changes_nothing(tmp_path):
    console = Console(record=True, width=200)

    tell(console, tmp_path / "demo", DemoSize(members=4, readers=10, items=20, days=5,
                                              actions=20, seed=3))

    text = console.export_text()
    assert "4/4 members synced" in text
    assert "sync 3 (nothing new at the desks): 0 events, 0 write-backs" in text
    assert "one book's journey" in text and "lent at" in text
    assert "quarantined rows: 3 (id_check_digit ×3, id_number_valid ×3)" in text
    assert "0 pending, 0 dead" in text
