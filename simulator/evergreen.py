"""An Evergreen-shaped member database on PostgreSQL (Evergreen's own schema, table and column
names: a working subset of Open-ILS/src/sql/Pg) and what Evergreen's circulation does to it.

Faithful where the hub depends on it: `actor.usr.last_update_time` is kept by a trigger (as
Evergreen's au_update_trig does), `asset.copy.status_changed_time` by a status trigger, branch
codes are org unit shortnames, a renewal closes the circulation and opens a new one
(parent_circ), a check-in records checkin_lib. One addition: `action.circulation` has no change
column in Evergreen, so the member installs `last_update_time` and its trigger
(CIRCULATION_CURSOR_SQL, also the text the onboarding check points to).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    update,
)

from circhub.simulator.desk import Desk
from circhub.simulator.localtime import naive_local

CONSORT = "CONSORT"  # circ_modifier of consortium copies (the Evergreen profile's marker)
CONSORT_LABEL = "##CONSORT##"  # call number label holding a member's consortium copies
AVAILABLE, CHECKED_OUT = 0, 1  # config.copy_status ids
RENEWALS_ALLOWED = 2

metadata = MetaData()
TZ = DateTime(timezone=True)

org_unit = Table(
    "org_unit", metadata,
    Column("id", Integer, primary_key=True),
    Column("parent_ou", Integer),
    Column("ou_type", Integer, nullable=False, default=3),
    Column("shortname", String, nullable=False, unique=True),
    Column("name", String, nullable=False),
    schema="actor",
)
usr = Table(
    "usr", metadata,
    Column("id", Integer, primary_key=True),
    Column("card", Integer),
    Column("profile", Integer, nullable=False, default=2),
    Column("usrname", String, nullable=False, unique=True),
    Column("ident_type", Integer, nullable=False, default=1),
    Column("ident_value", String),
    Column("first_given_name", String, nullable=False),
    Column("family_name", String, nullable=False),
    Column("dob", Date),
    Column("home_ou", Integer, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("create_date", TZ, nullable=False, server_default=func.now()),
    Column("last_update_time", TZ, nullable=False, server_default=func.now()),
    schema="actor",
)
card = Table(
    "card", metadata,
    Column("id", Integer, primary_key=True),
    Column("usr", Integer, nullable=False),
    Column("barcode", String, nullable=False, unique=True),
    Column("active", Boolean, nullable=False, default=True),
    schema="actor",
)
call_number = Table(
    "call_number", metadata,
    Column("id", Integer, primary_key=True),
    Column("record", Integer, nullable=False, default=-1),
    Column("label", String, nullable=False),
    Column("owning_lib", Integer, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    schema="asset",
)
copy = Table(
    "copy", metadata,
    Column("id", Integer, primary_key=True),
    Column("call_number", Integer, nullable=False),
    Column("barcode", String, nullable=False, unique=True),
    Column("circ_lib", Integer, nullable=False),
    Column("status", Integer, nullable=False, default=AVAILABLE),
    Column("circ_modifier", String),
    Column("create_date", TZ, nullable=False, server_default=func.now()),
    Column("edit_date", TZ, nullable=False, server_default=func.now()),
    Column("status_changed_time", TZ),
    Column("deleted", Boolean, nullable=False, default=False),
    schema="asset",
)
circulation = Table(
    "circulation", metadata,
    Column("id", Integer, primary_key=True),
    Column("usr", Integer, nullable=False),
    Column("target_copy", Integer, nullable=False),
    Column("circ_lib", Integer, nullable=False),
    Column("xact_start", TZ, nullable=False, server_default=func.now()),
    Column("xact_finish", TZ),
    Column("due_date", TZ, nullable=False),
    Column("checkin_time", TZ),
    Column("checkin_scan_time", TZ),
    Column("checkin_lib", Integer),
    Column("renewal_remaining", Integer, nullable=False),
    Column("parent_circ", Integer),
    Column("stop_fines", String),
    Column("last_update_time", TZ, nullable=False, server_default=func.now()),  # circhub's
    schema="action",
)

SCHEMAS = ("actor", "asset", "action")

# Evergreen's own triggers, as far as the hub relies on them. The status trigger keeps an
# explicitly written status_changed_time, so the simulator's desk clock stays coherent.
EVERGREEN_TRIGGERS_SQL = """
CREATE FUNCTION actor.au_updated() RETURNS trigger AS $$
BEGIN NEW.last_update_time := now(); RETURN NEW; END $$ LANGUAGE plpgsql;
CREATE TRIGGER au_update_trig BEFORE INSERT OR UPDATE ON actor.usr
    FOR EACH ROW EXECUTE FUNCTION actor.au_updated();
CREATE FUNCTION asset.acp_status_changed() RETURNS trigger AS $$
BEGIN
    IF NEW.status <> OLD.status
       AND NEW.status_changed_time IS NOT DISTINCT FROM OLD.status_changed_time THEN
        NEW.status_changed_time := now();
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER acp_status_changed_trig BEFORE UPDATE ON asset.copy
    FOR EACH ROW EXECUTE FUNCTION asset.acp_status_changed();
"""

# What an Evergreen member installs for circhub: a change column on circulations, kept by a
# trigger like actor.usr's. Without it the loans cursor would have to be xact_start or
# checkin_time, which offline circulation and backdated check-ins move into the past.
CIRCULATION_CURSOR_SQL = """
ALTER TABLE action.circulation
    ADD COLUMN IF NOT EXISTS last_update_time TIMESTAMPTZ NOT NULL DEFAULT now();
CREATE OR REPLACE FUNCTION action.circ_updated() RETURNS trigger AS $$
BEGIN NEW.last_update_time := now(); RETURN NEW; END $$ LANGUAGE plpgsql;
CREATE OR REPLACE TRIGGER circ_update_trig BEFORE INSERT OR UPDATE ON action.circulation
    FOR EACH ROW EXECUTE FUNCTION action.circ_updated();
"""


class EvergreenDesk(Desk):
    """The circulation desk of one Evergreen member (one org unit, `branch` its shortname)."""

    kind = "evergreen"

    def create_schema(self, member_codes: dict[str, str]) -> None:
        """A fresh database with one org unit per code (every member of the consortium)."""
        with self.engine.begin() as conn:
            for schema in SCHEMAS:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
            metadata.create_all(conn)
            conn.exec_driver_sql(EVERGREEN_TRIGGERS_SQL)
            conn.exec_driver_sql(CIRCULATION_CURSOR_SQL)
            root = conn.execute(insert(org_unit).values(
                shortname="CONS", name="Consortium", ou_type=1)).inserted_primary_key[0]
            conn.execute(insert(org_unit), [
                {"shortname": code, "name": name, "parent_ou": root}
                for code, name in member_codes.items()
            ])

    def _org(self, conn, shortname: str | None = None) -> int:
        return conn.execute(select(org_unit.c.id).where(
            org_unit.c.shortname == (shortname or self.branch))).scalar_one()

    def add_readers(self, rows: list[dict]) -> list[int]:
        """rows: cardnumber, surname, firstname, dateofbirth, dateenrolled (Koha-named, as the
        world makes them). The resident ID card is the library card. Returns actor.usr ids."""
        ids = []
        with self.engine.begin() as conn:
            home = self._org(conn)
            for r in rows:
                user_id = conn.execute(insert(usr).values(
                    usrname=r["cardnumber"], ident_value=r["cardnumber"],
                    family_name=r.get("surname") or "", first_given_name=r.get("firstname") or "",
                    dob=r.get("dateofbirth"), home_ou=home,
                    create_date=r.get("dateenrolled") or func.now())).inserted_primary_key[0]
                card_id = conn.execute(insert(card).values(
                    usr=user_id, barcode=r["cardnumber"])).inserted_primary_key[0]
                conn.execute(update(usr).where(usr.c.id == user_id).values(card=card_id))
                ids.append(user_id)
        return ids

    def add_items(self, barcodes: list[str], seen: datetime) -> None:
        with self.engine.begin() as conn:
            here = self._org(conn)
            for barcode in barcodes:
                volume = conn.execute(insert(call_number).values(
                    label=f"BK {barcode}", owning_lib=here)).inserted_primary_key[0]
                conn.execute(insert(copy).values(
                    call_number=volume, barcode=barcode, circ_lib=here, circ_modifier="BOOK",
                    status_changed_time=seen))

    def _copy(self, conn, barcode: str):
        return conn.execute(select(copy).where(copy.c.barcode == barcode)).first()

    def _open_circ(self, conn, copy_id: int):
        return conn.execute(select(circulation).where(
            circulation.c.target_copy == copy_id, circulation.c.checkin_time.is_(None))).first()

    def checkout(self, barcode: str, reader_id: int, at: datetime, due: datetime) -> int:
        with self.engine.begin() as conn:
            here, item = self._org(conn), self._copy(conn, barcode)
            circ_id = conn.execute(insert(circulation).values(
                usr=reader_id, target_copy=item.id, circ_lib=here, xact_start=at, due_date=due,
                renewal_remaining=RENEWALS_ALLOWED)).inserted_primary_key[0]
            conn.execute(update(copy).where(copy.c.id == item.id).values(
                status=CHECKED_OUT, circ_lib=here, status_changed_time=at,
                edit_date=func.now()))
            return circ_id

    def checkin(self, barcode: str, at: datetime) -> None:
        """Close the open circulation here; a foreign book becomes a consortium copy."""
        with self.engine.begin() as conn:
            here, item = self._org(conn), self._copy(conn, barcode)
            if item is None:
                self._add_consortium_copy(conn, barcode, here, at)
                return
            circ = self._open_circ(conn, item.id)
            if circ is not None:
                conn.execute(update(circulation).where(circulation.c.id == circ.id).values(
                    checkin_time=at, checkin_scan_time=at, checkin_lib=here,
                    stop_fines="CHECKIN"))
            conn.execute(update(copy).where(copy.c.id == item.id).values(
                status=AVAILABLE, circ_lib=here, status_changed_time=at, edit_date=func.now()))

    def _add_consortium_copy(self, conn, barcode: str, here: int, at: datetime) -> None:
        volume = conn.execute(select(call_number.c.id).where(
            call_number.c.label == CONSORT_LABEL, call_number.c.owning_lib == here)).scalar()
        if volume is None:
            volume = conn.execute(insert(call_number).values(
                label=CONSORT_LABEL, owning_lib=here)).inserted_primary_key[0]
        conn.execute(insert(copy).values(
            call_number=volume, barcode=barcode, circ_lib=here, circ_modifier=CONSORT,
            status=AVAILABLE, status_changed_time=at))

    def renew(self, barcode: str, at: datetime, due: datetime) -> None:
        """Evergreen renews by closing the circulation and opening its successor."""
        with self.engine.begin() as conn:
            circ = self._open_circ(conn, self._copy(conn, barcode).id)
            conn.execute(update(circulation).where(circulation.c.id == circ.id).values(
                checkin_time=at, checkin_scan_time=at, checkin_lib=circ.circ_lib,
                stop_fines="RENEW"))
            conn.execute(insert(circulation).values(
                usr=circ.usr, target_copy=circ.target_copy, circ_lib=circ.circ_lib,
                xact_start=at, due_date=due, parent_circ=circ.id,
                renewal_remaining=max(circ.renewal_remaining - 1, 0)))

    # What a test or the demo reads back: the owner's view of one book.
    def item_view(self, barcode: str) -> dict:
        with self.engine.connect() as conn:
            item = self._copy(conn, barcode)
            circ = self._open_circ(conn, item.id)
            return {"holding": self._shortname(conn, item.circ_lib), "status": item.status,
                    "onloan": naive_local(circ.due_date).date() if circ else None,
                    "open_loan": circ.id if circ else None}

    def loan_view(self, circ_id: int) -> dict:
        with self.engine.connect() as conn:
            circ = conn.execute(select(circulation).where(circulation.c.id == circ_id)).first()
            return {"open": circ.checkin_time is None,
                    "returned_at": naive_local(circ.checkin_time),
                    "return_branch": self._shortname(conn, circ.checkin_lib)}

    def _shortname(self, conn, org_id: int | None) -> str | None:
        if org_id is None:
            return None
        return conn.execute(select(org_unit.c.shortname).where(org_unit.c.id == org_id)).scalar()
