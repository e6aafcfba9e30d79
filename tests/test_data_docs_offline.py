"""Data Docs render with no network: a headless browser, every host unreachable, finds each
member's section named by the run and GX's expectations on its validation page."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from circhub.connections.runtime import open_runtime
from circhub.flows.sync import sync_consortium
from tests.helpers import koha_consortium

# No name resolves and every connection goes to a closed port: nothing can load from outside.
NO_NETWORK = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
              "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
              "--disable-background-networking", "--disable-component-update"]


def _dom(page, profile) -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is missing: `make test` installs it (scripts/ensure-chromium)"
    done = subprocess.run([browser, *NO_NETWORK, f"--user-data-dir={profile}",
                           "--virtual-time-budget=3000", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", done.stdout))


@pytest.mark.usefixtures("prefect_server")
def test_data_docs_render_offline_with_a_section_per_member_and_the_expectations(tmp_path):
    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(2)]
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/central.db",
                                    bad_readers=1)
    world.play(days=2, actions_per_day=10)

    assert sync_consortium(config=str(config), return_state=True).is_completed()

    site = open_runtime(str(config)).consortium.data_docs_dir / "sync-consortium"
    pages = list(site.rglob("*.html"))
    remote = [p for p in pages  # stylesheets, scripts, images from elsewhere: none
              if re.search(r"<(link|script|img)[^>]+(src|href)=\"https?://", p.read_text())]
    assert pages and remote == []
    index = _dom(site / "index.html", tmp_path / "profile")
    assert "Validation of sync-consortium-" in index
    failing = _members_with_quarantined_readers(config)
    assert failing  # the bad reader planted
    for m in open_runtime(str(config)).consortium.members:
        assert f"{m.code} {m.name}" in index
        # GX's own runs are the member's, named by the sync run and the member; a member
        # whose rows all passed has its line and no GX page
        linked = re.search(rf"readers \(sync-consortium-\S+ {m.code}\)", index)
        assert bool(linked) == (m.code in failing), m.code
    assert "Every rule passed on its rows" in index
    assert "id_number_valid" in index and "rows failing" in index
    validation = next((site / "validations" / "readers").rglob("*.html"))
    shown = _dom(validation, tmp_path / "profile")
    assert "values must belong to this set" in shown and "Unsuccessful Expectations" in shown


def _members_with_quarantined_readers(config) -> set[str]:
    from sqlalchemy import select

    from circhub.domain.schema import quarantine

    with open_runtime(str(config)).store.connect() as conn:
        return set(conn.execute(select(quarantine.c.member).where(
            quarantine.c.entity == "readers")).scalars())
