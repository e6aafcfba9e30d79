"""Great Expectations Data Docs: written once per run to the configured folder, a page per member
and suite validated, the failing expectations shown, never a resident ID number in clear."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from circhub.connections.config import ConfigError, load_config, parse_config
from circhub.connections.runtime import open_runtime
from circhub.domain.identity import looks_like_id_number
from circhub.simulator import koha
from circhub.tasks.sync.cycle import sync_member
from circhub.tasks.sync.validate import validate_extract, write_data_docs
from tests.helpers import koha_consortium

GOOD = {"code": "CD001", "name": "Chengdu Public Library", "profile": "koha",
        "connection": "sqlite:///x.db"}


def _text(page: Path) -> str:
    """What a reader of the page sees: tags, scripts and styles stripped, spaces collapsed."""
    raw = re.sub(r"<script.*?</script>|<style.*?</style>", " ", page.read_text(), flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", raw)))


def _validation_pages(site: Path) -> dict[tuple[str, str], Path]:
    """(suite, member) -> page: validations/<suite>/<run name = member>/<run time>/<batch>.html"""
    pages: dict[tuple[str, str], Path] = {}
    for page in (site / "validations").rglob("*.html"):
        suite, member = page.relative_to(site / "validations").parts[:2]
        assert (suite, member) not in pages, f"two results of {member} {suite}"
        pages[suite, member] = page
    return pages


def test_a_sync_writes_data_docs_showing_failing_rules_and_no_id_number_in_clear(tmp_path):
    write_data_docs(tmp_path / "before")  # drops results other tests left in this process
    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(2)]
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/c.db",
                                    readers=4, items=3, bad_readers=1)
    a, b = world.desks  # the bad reader is a's
    world.checkout(f"{a}0000001", a, next(p for p in world.people if p.home == a))
    with world.desks[a].engine.begin() as conn:  # a's one loan, due before it was issued
        conn.execute(update(koha.issues).values(date_due=world.clock - timedelta(days=3)))
    rt = open_runtime(str(config))
    validated = set()
    for member in rt.consortium.members:
        synced = sync_member(rt, member)
        validated |= {(e, member.code) for e, df in synced.extract.frames.items() if len(df)}
        # validated again in the same process: only the latest result per member and suite stays
        validate_extract(member.code, synced.extract.frames, rt.member_view(member))

    index = write_data_docs(rt.consortium.data_docs_dir / "sync-consortium")

    site = tmp_path / "data-docs" / "sync-consortium"  # the default: next to the config file
    assert index == site / "index.html" and index.is_file()
    assert {("readers", a), ("readers", b), ("items", a), ("loans", a)} <= validated
    pages = _validation_pages(site)
    assert set(pages) == validated
    assert {p.stem for p in (site / "expectations").glob("*.html")} == {"readers", "items",
                                                                         "loans"}
    for suite, member in pages:
        assert f"validations/{suite}/{member}/" in index.read_text()  # linked from the index

    readers_a, loans_a = _text(pages["readers", a]), _text(pages["loans", a])
    assert "Status: Failed" in readers_a and "Unsuccessful Expectations 1 " in readers_a
    assert re.search(r"id_status .*values must belong to this set: valid permit \. "
                     r"1 unexpected values? found", readers_a)
    assert "Unsuccessful Expectations 1 " in loans_a and "due_at" in loans_a
    assert "Unsuccessful Expectations 0 " in _text(pages["readers", b])
    suite_page = _text(site / "expectations" / "readers.html")  # expectation -> quarantine rule
    assert "circhub rule id_number_valid" in suite_page

    id_numbers = set()
    for desk in world.desks.values():
        with desk.engine.connect() as conn:
            id_numbers |= set(conn.execute(select(koha.borrowers.c.cardnumber)).scalars())
    # 9 readers, plus the accounts each Koha ships with (staff, statistical, anonymous, the
    # hub's stand-in), whose card numbers must not be shown either.
    readers = {n for n in id_numbers if n and looks_like_id_number(n)}
    assert len(readers) == 9
    id_numbers = {n for n in id_numbers if n}
    for file in site.rglob("*"):
        if file.is_file():
            content = file.read_bytes().decode("utf-8", errors="replace")
            assert not any(n in content for n in id_numbers), file
            if file.suffix == ".html":
                assert not looks_like_id_number(_text(file)), file

    # The results were dropped with the build: the next run's docs show that run only.
    write_data_docs(site)
    assert not (site / "validations").exists() and index.is_file()


def test_data_docs_dir_is_taken_from_the_config_file_folder_and_can_be_turned_off(tmp_path):
    def load(line: str):
        path = tmp_path / "conf" / "consortium.toml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"[consortium]\n{line}\n[[members]]\ncode = \"CD001\"\n"
                        f"name = \"Chengdu\"\nprofile = \"koha\"\nconnection = \"sqlite:///x.db\"\n")
        return load_config(path).data_docs_dir

    assert load("") == tmp_path / "conf" / "data-docs"
    assert load('data_docs_dir = "gx/docs"') == tmp_path / "conf" / "gx" / "docs"
    assert load(f'data_docs_dir = "{tmp_path / "abs"}"') == tmp_path / "abs"
    assert load('data_docs_dir = ""') is None
    assert parse_config({"members": [GOOD]}).data_docs_dir == Path("data-docs")  # working dir
    with pytest.raises(ConfigError, match="field 'data_docs_dir'"):
        load("data_docs_dir = 3")
