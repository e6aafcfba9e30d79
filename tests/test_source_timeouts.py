"""A member that stops answering fails its run instead of holding it: every PostgreSQL-served
member, libpq or ODBC (the Polaris-style path), carries the same statement limit."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from circhub.connections.engines import engine_for
from tests.member_databases import member_database


@pytest.mark.parametrize("server", ["postgresql", "odbc"])
def test_a_member_connection_carries_the_statement_limit(request, server):
    with engine_for(member_database(request, server)).connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "5min"
        assert conn.execute(text("SHOW jit")).scalar() == "off"
