"""Outside the demo, circhub does not start without the reader-ID key: every CLI command that
takes a consortium config and every flow refuses, by name of what is missing, before it reads
or writes anything. A Prefect Secret block is a key source too, and a store keyed with one key
refuses another."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
import typer
from prefect import Flow
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

import circhub.flows
from circhub.cli import app
from circhub.connections.engines import ID_KEY_SECRET, ConnectionSetupError
from circhub.connections.key_epochs import KeyMismatch
from circhub.connections.runtime import open_runtime, upgrade_store
from tests.helpers import koha_consortium

pytestmark = pytest.mark.usefixtures("prefect_server")
MISSING = "no reader ID hash key"
# Commands that never open a consortium's central store: the demo builds its own (demo = true)
# and simulate only writes member databases and a config.
NO_STORE = {"demo", "simulate"}
DUMMY = {"member": "SC001", "entity": "readers", "since": "2025-01-01"}


@pytest.fixture
def keyless(tmp_path, monkeypatch):
    """A non-demo consortium with no key anywhere (no env variable, no Secret block)."""
    monkeypatch.delenv("CIRCHUB_ID_KEY", raising=False)
    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(2)]
    central = tmp_path / "central.db"
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{central}", demo=False,
                                     upgrade=False)
    world.play(days=1, actions_per_day=5)
    return config, central


def _commands(group, path=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a sub-group (typer vendors its own click)
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def _invocation(path, cmd, config) -> list[str]:
    """The command with its config and a plausible value for every argument and required
    option, so that it gets past its own usage checks to where it opens the runtime."""
    args = [*path, "--config", str(config)]
    for p in cmd.params:
        value = DUMMY.get(p.name, "1")  # "1" parses as a number and as text alike
        if p.param_type_name == "argument":
            args.append(value)
        elif p.required and p.name != "config":
            args += [p.opts[0], value]
    return args


def _config_commands():
    root = typer.main.get_command(app)
    return [(path, cmd) for path, cmd in _commands(root)
            if any(p.name == "config" for p in cmd.params)]


def test_every_command_either_takes_a_config_or_is_known_not_to_open_the_store():
    root = typer.main.get_command(app)
    with_config = {path for path, _ in _config_commands()}
    others = {path for path, _ in _commands(root)} - with_config
    assert {p[-1] for p in others} <= NO_STORE


@pytest.mark.parametrize("path,cmd", _config_commands(),
                         ids=[" ".join(path) for path, _ in _config_commands()])
def test_every_config_command_refuses_to_start_without_a_key(keyless, path, cmd):
    config, central = keyless

    result = CliRunner().invoke(app, _invocation(path, cmd, config), input="")

    assert result.exit_code == 2, result.output
    assert MISSING in result.output and "CIRCHUB_ID_KEY" in result.output
    assert not central.exists() or not inspect(create_engine(f"sqlite:///{central}")) \
        .get_table_names()  # refused before the store was touched


def _flows():
    found = {}
    for info in pkgutil.iter_modules(circhub.flows.__path__):
        module = importlib.import_module(f"circhub.flows.{info.name}")
        found.update({f.name: f for f in vars(module).values() if isinstance(f, Flow)})
    return sorted(found.values(), key=lambda f: f.name)


@pytest.mark.parametrize("flow_fn", _flows(), ids=lambda f: f.name)
def test_every_flow_refuses_to_run_without_a_key(keyless, flow_fn):
    config, central = keyless
    required = {n: DUMMY.get(n, "X") for n, p in flow_fn.parameters.properties.items()
                if n in flow_fn.parameters.required and n != "config"}

    state = flow_fn(config=str(config), return_state=True, **required)

    assert state.is_failed()
    assert MISSING in state.message
    assert not central.exists() or not inspect(create_engine(f"sqlite:///{central}")) \
        .get_table_names()


def test_a_prefect_secret_block_is_a_key_source(keyless):
    from prefect.blocks.system import Secret

    config, _ = keyless
    upgrade_store(config)  # a store made by `circhub db upgrade`; only the key is missing
    Secret(value="key-from-a-secret-block-0123456789").save(ID_KEY_SECRET, overwrite=True)
    try:
        rt = open_runtime(str(config))
    finally:
        Secret.delete(ID_KEY_SECRET)
    assert rt.id_key == b"key-from-a-secret-block-0123456789"


def test_a_store_keyed_with_one_key_refuses_another(keyless, monkeypatch):
    config, _ = keyless
    upgrade_store(config)
    monkeypatch.setenv("CIRCHUB_ID_KEY", "the-first-key-0123456789abcdef")
    open_runtime(str(config))
    open_runtime.cache_clear()
    monkeypatch.setenv("CIRCHUB_ID_KEY", "another-key-0123456789abcdef")

    with pytest.raises(KeyMismatch) as caught:
        open_runtime(str(config))
    assert "0123456789" not in str(caught.value)  # check values only, never a key
    assert isinstance(caught.value, ConnectionSetupError)
