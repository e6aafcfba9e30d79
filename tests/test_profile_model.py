"""A profile's structure is declared (circhub.connections.profile_model): each kind of mistake
in a profile file is refused when it loads, in one line naming the profile, the place (entity
and source, write-back kind and step), the key and the value."""

from __future__ import annotations

import copy
import tomllib

import pytest

from circhub.connections.profile import (
    PROFILE_DIR,
    ProfileError,
    available_profiles,
    load_profile,
    parse_profile,
)
from circhub.connections.profile_model import Profile, Step

KOHA = tomllib.loads((PROFILE_DIR / "koha.toml").read_text())


def _refused(change) -> str:
    data = copy.deepcopy(KOHA)
    change(data)
    with pytest.raises(ProfileError) as refused:
        parse_profile("koha_typo", data)
    return str(refused.value)


def _step(data: dict, kind: str, n: int) -> dict:
    return data["writeback"][kind][n - 1]


@pytest.mark.parametrize("kind", available_profiles())
def test_every_shipped_profile_loads_as_the_declared_model(kind):
    profile = load_profile(kind)
    assert isinstance(profile, Profile) and profile.kind == kind
    assert all(isinstance(step, Step) and step.label.startswith(f"profile {kind!r} write-back ")
               for steps in profile.writeback.values() for step in steps)


def test_an_unknown_top_level_key_is_refused_with_the_nearest_name():
    message = _refused(lambda d: d.update(descripton="Koha"))
    assert message == "profile 'koha_typo': unknown key 'descripton' (did you mean description?)"


def test_capabilities_are_no_key_of_the_profile_language():
    message = _refused(lambda d: d.update(capabilities=["returning"]))
    assert message.startswith("profile 'koha_typo': unknown key 'capabilities'")


def test_an_unknown_step_key_is_refused_naming_the_step_and_the_nearest_key():
    message = _refused(lambda d: _step(d, "close_loan", 2).update(skip_if_exist={}))
    assert message == ("profile 'koha_typo' write-back 'close_loan' step 2 (delete issues): "
                       "unknown key 'skip_if_exist' (did you mean skip_if_exists?)")


def test_an_unknown_key_inside_a_step_guard_is_named_by_its_path():
    message = _refused(lambda d: _step(d, "close_loan", 1)["skip_if_exists"].update(wher={}))
    assert message == ("profile 'koha_typo' write-back 'close_loan' step 1 (copy_row issues): "
                       "unknown key 'skip_if_exists.wher' (did you mean where?)")


def test_an_op_outside_the_allowed_set_is_refused_naming_the_allowed_ones_and_the_value():
    message = _refused(lambda d: _step(d, "set_item", 1).update(op="upsert"))
    assert message == ("profile 'koha_typo' write-back 'set_item' step 1 (upsert items): "
                       "key 'op' should be 'update', 'copy_row', 'delete', 'insert_missing' or "
                       "'insert', not 'upsert'")


def test_a_row_count_outside_the_allowed_set_is_refused():
    message = _refused(lambda d: _step(d, "close_loan", 2).update(rows="many"))
    assert message == ("profile 'koha_typo' write-back 'close_loan' step 2 (delete issues): "
                       "key 'rows' should be 'one', 'at_most_one' or 'any', not 'many'")


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: _step(d, "set_item", 1).update(verify="no"),
     "profile 'koha_typo' write-back 'set_item' step 1 (update items): key 'verify' should be "
     "a valid boolean, not 'no'"),
    (lambda d: d["entities"]["loans"]["sources"][0]["joins"][0].update(inner="yes"),
     "profile 'koha_typo' entity 'loans' source 1 join 1: key 'inner' should be a valid "
     "boolean, not 'yes'"),
    (lambda d: d.update(description=3),
     "profile 'koha_typo': key 'description' should be a valid string, not 3"),
])
def test_a_value_of_the_wrong_type_is_refused_naming_place_key_and_value(change, expected):
    assert _refused(change) == expected


def test_a_required_entity_left_unmapped_is_refused_by_name():
    message = _refused(lambda d: d["entities"].pop("loans"))
    assert message == "profile 'koha_typo': entities: entity 'loans' is not mapped"


def test_an_unknown_entity_is_refused_with_the_nearest_name():
    message = _refused(lambda d: d["entities"].update(loan=d["entities"].pop("loans")))
    assert "unknown entity 'loan' (did you mean loans?)" in message


def test_a_source_key_typo_names_the_entity_and_the_source():
    message = _refused(lambda d: d["entities"]["loans"]["sources"][1].update(exlude=[]))
    assert message == ("profile 'koha_typo' entity 'loans' source 2: unknown key 'exlude' "
                       "(did you mean exclude?)")


def test_a_missing_required_key_is_named():
    message = _refused(lambda d: d["entities"]["items"]["sources"][0].pop("table"))
    assert message == "profile 'koha_typo' entity 'items' source 1: key 'table' missing"


def test_an_unknown_write_back_kind_lists_the_kinds():
    message = _refused(lambda d: d["writeback"].update(transfers=d["writeback"]["transfer"]))
    assert message == ("profile 'koha_typo': unknown key 'writeback.transfers' "
                       "(did you mean transfer?)")


def test_a_look_up_key_typo_is_refused_once():
    message = _refused(lambda d: d["lookups"]["item"].update(optinal=True))
    assert message == ("profile 'koha_typo': lookups: lookup 'item': unknown key 'optinal' of "
                       "a lookup (did you mean optional?)")  # not again at each step using it


def test_every_problem_is_reported_in_one_load():
    def two_mistakes(data):
        data.update(descripton="Koha")
        _step(data, "set_item", 1).update(op="upsert")
    assert len(_refused(two_mistakes).splitlines()) == 2


def test_a_step_keeps_its_defaults_from_the_model():
    step = load_profile("koha").writeback["transfer"][0]
    assert (step.rows, step.verify, step.into, step.returns, step.when) == (
        "one", True, None, None, {})
