"""An Evergreen member database on PostgreSQL (schema: simulator/evergreen_schema.py) and its
circulation desk, writing rows as Evergreen's own circulation code does. Written by us from
Open-ILS/src/perlmods/lib/OpenILS/Application/Circ/Circulate.pm (read at 921164c):

- checkout (do_checkout, make_checkout): a circulation at the desk's org unit (circ_lib),
  circ_staff the requestor, xact_start, due_date, the duration and fine rule names; the copy's
  status becomes 1 Checked out and nothing else of the copy changes (not circ_lib, not edit_date;
  status_changed_time moves by trigger).
- checkin (do_checkin, checkin_handle_circ_start/finish, handle_fines): the open circulation
  gets checkin_time, checkin_scan_time, checkin_staff, checkin_lib, stop_fines 'CHECKIN' with
  stop_fines_time, and xact_finish when nothing is owed (this simulation bills nothing). The
  copy becomes 7 Reshelving. Checked in away from its circ_lib it goes in transit home (an
  action.transit_copy from here to circ_lib, copy_status the status it will have there, the
  copy 6 In transit: checkin_build_copy_transit) unless it can float here
  (evergreen.can_float, 120.floating_groups.sql): then circ_lib becomes this org unit, with
  editor and edit_date. A copy in transit checked in at its destination is received
  (dest_recv_time, the transit's copy_status).
- renew (do_renew): the circulation is closed with stop_fines 'RENEW' and a successor opened
  with parent_circ.

The staff user of every desk action is Evergreen's built-in administrator (id 1).

What a member creates for circhub at onboarding (ONBOARDING_SQL, `member_org_units`): an org
unit per other member of the consortium (shortname = its code), the consortium stand-in group
and patron the hub checks away books out to, and the circulation change column
(CIRCULATION_CURSOR_SQL). A foreign book checked in here becomes a consortium copy
(circ_modifier CONSORT on a call number ##CONSORT## of this org unit).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text

from circhub.simulator.desk import Desk
from circhub.simulator.evergreen_schema import SCHEMAS, evergreen_sql, on_sim_clock
from circhub.simulator.localtime import naive_local

CONSORT = "CONSORT"  # circ_modifier of consortium copies (the Evergreen profile's marker)
CONSORT_LABEL = "##CONSORT##"  # call number label holding a member's consortium copies
AVAILABLE, CHECKED_OUT, IN_TRANSIT, RESHELVING = 0, 1, 6, 7  # config.copy_status ids
ADMIN = 1  # actor.usr id of Evergreen's built-in administrator
RENEWALS_ALLOWED = 2
STANDIN_GROUP = 9900  # permission.grp_tree id of the consortium stand-in group
STANDIN_USRNAME = "circhub-consortium"

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

# The consortium stand-in: a non-lending group and one patron in it. The hub checks an away
# book out to this patron in its owner's Evergreen (DCB's virtual patron), and closes that
# circulation when the book is home. Idempotent.
ONBOARDING_SQL = f"""
INSERT INTO permission.grp_tree (id, name, parent, usergroup, description)
    VALUES ({STANDIN_GROUP}, 'Consortium stand-in', 1, FALSE,
            'circhub: books away at other members are checked out to this group')
    ON CONFLICT (id) DO NOTHING;
INSERT INTO actor.usr (profile, usrname, ident_type, first_given_name, family_name, home_ou)
    SELECT {STANDIN_GROUP}, '{STANDIN_USRNAME}', 3, 'Consortium', 'circhub', 1
    WHERE NOT EXISTS (SELECT 1 FROM actor.usr WHERE usrname = '{STANDIN_USRNAME}');
""" + CIRCULATION_CURSOR_SQL


class EvergreenDesk(Desk):
    """The circulation desk of one Evergreen org unit (`branch` its shortname)."""

    kind = "evergreen"

    def create_schema(self, member_codes: dict[str, str]) -> None:
        """A fresh Evergreen with one branch org unit per code: this member's own and, as the
        member creates them at onboarding, one for every other member of the consortium."""
        with self.engine.begin() as conn:
            for schema in SCHEMAS:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
            conn.exec_driver_sql(evergreen_sql())
            member_org_units(conn, member_codes)
            conn.exec_driver_sql(on_sim_clock(ONBOARDING_SQL))

    # -- the desk's clock and look-ups -----------------------------------------------------
    def _at(self, conn, at: datetime) -> None:
        """Evergreen's now() is the simulated time of this desk action (never backwards)."""
        conn.execute(text("UPDATE circhub_sim.clock SET at = greatest(at, :at)"), {"at": at})

    def _org(self, conn, shortname: str | None = None) -> int:
        return conn.execute(text("SELECT id FROM actor.org_unit WHERE shortname = :s"),
                            {"s": shortname or self.branch}).scalar_one()

    def _copy(self, conn, barcode: str):
        """The live copy of a barcode: a deleted copy may have had the same one."""
        return conn.execute(text("SELECT * FROM asset.copy WHERE barcode = :b AND NOT deleted"),
                            {"b": barcode}).mappings().first()

    def _open_circ(self, conn, copy_id: int):
        return conn.execute(text(
            "SELECT * FROM action.circulation WHERE target_copy = :c AND checkin_time IS NULL"),
            {"c": copy_id}).mappings().first()

    # -- registration and cataloguing --------------------------------------------------------
    def add_readers(self, rows: list[dict]) -> list[int]:
        """rows: cardnumber, surname, firstname, dateofbirth, dateenrolled (Koha-named, as the
        world makes them). The resident ID card is the library card. Returns actor.usr ids."""
        ids = []
        with self.engine.begin() as conn:
            home = self._org(conn)
            for r in rows:
                user_id = conn.execute(text(
                    "INSERT INTO actor.usr (profile, usrname, ident_type, ident_value, "
                    "family_name, first_given_name, dob, home_ou, create_date) VALUES "
                    "(2, :card, 3, :card, :family, :given, :dob, :home, "
                    "coalesce(CAST(:enrolled AS timestamptz), circhub_sim.now())) RETURNING id"),
                    {"card": r["cardnumber"], "family": r.get("surname") or "",
                     "given": r.get("firstname") or "", "dob": r.get("dateofbirth"),
                     "home": home, "enrolled": r.get("dateenrolled")}).scalar_one()
                card_id = conn.execute(text(
                    "INSERT INTO actor.card (usr, barcode) VALUES (:u, :b) RETURNING id"),
                    {"u": user_id, "b": r["cardnumber"]}).scalar_one()
                conn.execute(text("UPDATE actor.usr SET card = :c WHERE id = :u"),
                             {"c": card_id, "u": user_id})
                ids.append(user_id)
        return ids

    def add_items(self, barcodes: list[str], seen: datetime, floating: int | None = None
                  ) -> None:
        with self.engine.begin() as conn:
            self._at(conn, seen)
            here = self._org(conn)
            for barcode in barcodes:
                volume = self._call_number(conn, f"BK {barcode}", here)
                self._new_copy(conn, volume, barcode, here, "BOOK", floating)

    def _call_number(self, conn, label: str, owner: int) -> int:
        found = conn.execute(text(
            "SELECT id FROM asset.call_number WHERE record = -1 AND label = :l "
            "AND owning_lib = :o AND NOT deleted"), {"l": label, "o": owner}).scalar()
        return found or conn.execute(text(
            "INSERT INTO asset.call_number (creator, editor, record, owning_lib, label) "
            "VALUES (1, 1, -1, :o, :l) RETURNING id"), {"l": label, "o": owner}).scalar_one()

    def _new_copy(self, conn, volume: int, barcode: str, here: int, modifier: str,
                  floating: int | None = None) -> int:
        return conn.execute(text(
            "INSERT INTO asset.copy (circ_lib, creator, editor, call_number, loan_duration, "
            "fine_level, barcode, circ_modifier, floating) "
            "VALUES (:here, 1, 1, :cn, 2, 2, :b, :m, :f) RETURNING id"),
            {"here": here, "cn": volume, "b": barcode, "m": modifier, "f": floating}
        ).scalar_one()

    # -- circulation ---------------------------------------------------------------------------
    def checkout(self, barcode: str, reader_id: int, at: datetime, due: datetime) -> int:
        with self.engine.begin() as conn:
            self._at(conn, at)
            here, item = self._org(conn), self._copy(conn, barcode)
            if self._open_circ(conn, item["id"]) is not None:
                # Evergreen refuses (OPEN_CIRCULATION_EXISTS); staff override checks it in.
                self._checkin_copy(conn, item, here, at)
                item = self._copy(conn, barcode)
            circ_id = self._open(conn, item["id"], reader_id, here, at, due, RENEWALS_ALLOWED)
            self._set_status(conn, item["id"], CHECKED_OUT)
            return circ_id

    def _open(self, conn, copy_id: int, usr: int, here: int, at: datetime, due: datetime,
              renewals: int, parent: int | None = None) -> int:
        return conn.execute(text(
            "INSERT INTO action.circulation (usr, target_copy, circ_lib, circ_staff, xact_start, "
            "due_date, renewal_remaining, grace_period, duration, duration_rule, "
            "recurring_fine_rule, max_fine_rule, parent_circ) VALUES (:usr, :copy, :here, 1, "
            ":at, :due, :renewals, '0 seconds', '28 days', 'default', 'default', 'default', "
            ":parent) RETURNING id"),
            {"usr": usr, "copy": copy_id, "here": here, "at": at, "due": due,
             "renewals": renewals, "parent": parent}).scalar_one()

    def _set_status(self, conn, copy_id: int, status: int, **also) -> None:
        extra = "".join(f", {col} = :{col}" for col in also)
        conn.execute(text(f"UPDATE asset.copy SET status = :s{extra} WHERE id = :c"),
                     {"s": status, "c": copy_id, **also})

    def checkin(self, barcode: str, at: datetime) -> None:
        """Check a book in here; a foreign book becomes a consortium copy of this org unit."""
        with self.engine.begin() as conn:
            self._at(conn, at)
            here, item = self._org(conn), self._copy(conn, barcode)
            if item is None:
                volume = self._call_number(conn, CONSORT_LABEL, here)
                copy_id = self._new_copy(conn, volume, barcode, here, CONSORT)
                self._set_status(conn, copy_id, RESHELVING)
                return
            self._checkin_copy(conn, item, here, at)

    def _checkin_copy(self, conn, item, here: int, at: datetime) -> None:
        circ = self._open_circ(conn, item["id"])
        if circ is not None:
            self._close(conn, circ["id"], here, at, "CHECKIN")
        if item["status"] == IN_TRANSIT and self._receive_transit(conn, item, here, at):
            return
        if item["circ_lib"] == here:
            self._set_status(conn, item["id"], RESHELVING)
        elif item["floating"] and self._can_float(conn, item["floating"], item["circ_lib"],
                                                  here):
            self._set_status(conn, item["id"], RESHELVING, circ_lib=here, editor=ADMIN,
                             edit_date=at)
        else:  # in transit to its circulating library
            conn.execute(text(
                "INSERT INTO action.transit_copy (source_send_time, target_copy, source, dest, "
                "copy_status) VALUES (:at, :c, :here, :dest, :s)"),
                {"at": at, "c": item["id"], "here": here, "dest": item["circ_lib"],
                 "s": RESHELVING})
            self._set_status(conn, item["id"], IN_TRANSIT)

    def _close(self, conn, circ_id: int, where: int, at: datetime, why: str) -> None:
        conn.execute(text(
            "UPDATE action.circulation SET checkin_time = :at, checkin_scan_time = :at, "
            "checkin_staff = 1, checkin_lib = :where, stop_fines = coalesce(stop_fines, :why), "
            "stop_fines_time = coalesce(stop_fines_time, :at), xact_finish = :at "
            "WHERE id = :id"), {"at": at, "where": where, "why": why, "id": circ_id})

    def _receive_transit(self, conn, item, here: int, at: datetime) -> bool:
        transit = conn.execute(text(
            "SELECT id, copy_status FROM action.transit_copy WHERE target_copy = :c "
            "AND dest = :here AND dest_recv_time IS NULL AND cancel_time IS NULL"),
            {"c": item["id"], "here": here}).first()
        if transit is None:
            return False
        conn.execute(text("UPDATE action.transit_copy SET dest_recv_time = :at WHERE id = :id"),
                     {"at": at, "id": transit.id})
        self._set_status(conn, item["id"], transit.copy_status)
        return True

    def _can_float(self, conn, group: int, from_ou: int, to_ou: int) -> bool:
        """evergreen.can_float: a group member whose subtree holds to_ou, within its depths;
        an excluding member wins."""
        depth = {r.id: r for r in conn.execute(text(
            "SELECT aou.id, aou.parent_ou, aout.depth FROM actor.org_unit aou "
            "JOIN actor.org_unit_type aout ON aou.ou_type = aout.id"))}

        def ancestors(ou):
            found = []
            while ou is not None:
                found.append(ou)
                ou = depth[ou].parent_ou
            return found

        shared = max(depth[ou].depth for ou in set(ancestors(from_ou)) & set(ancestors(to_ou)))
        members = conn.execute(text(
            "SELECT org_unit, stop_depth, max_depth, exclude FROM config.floating_group_member "
            "WHERE floating_group = :g ORDER BY exclude DESC"), {"g": group}).all()
        for m in members:
            if (m.org_unit in ancestors(to_ou) and m.stop_depth <= shared
                    and (m.max_depth is None or depth[to_ou].depth <= m.max_depth)):
                return not m.exclude
        return False

    def renew(self, barcode: str, at: datetime, due: datetime) -> int:
        """Evergreen renews by closing the circulation and opening its successor: returns
        the successor's id (the loan's id from now on, as Evergreen records it)."""
        with self.engine.begin() as conn:
            self._at(conn, at)
            circ = self._open_circ(conn, self._copy(conn, barcode)["id"])
            self._close(conn, circ["id"], circ["circ_lib"], at, "RENEW")
            return self._open(conn, circ["target_copy"], circ["usr"], circ["circ_lib"], at, due,
                              max(circ["renewal_remaining"] - 1, 0), parent=circ["id"])

    # -- what a test or the demo reads back: the owner's view of one book -----------------------
    def item_view(self, barcode: str) -> dict:
        """Where Evergreen's staff client shows the book: at the org unit of its open
        circulation when it has one (the stand-in's, for a book away), else its circ_lib."""
        with self.engine.connect() as conn:
            item = self._copy(conn, barcode)
            circ = self._open_circ(conn, item["id"])
            held_at = circ["circ_lib"] if circ else item["circ_lib"]
            return {"holding": self._shortname(conn, held_at), "status": item["status"],
                    "circ_lib": self._shortname(conn, item["circ_lib"]),
                    "onloan": naive_local(circ["due_date"]).date()
                    if circ and circ["due_date"] else None,
                    "open_loan": circ["id"] if circ and not self._standin(conn, circ) else None}

    def _standin(self, conn, circ) -> bool:
        """A circulation to the consortium stand-in: the hub's mark of a book away."""
        return conn.execute(text("SELECT usrname FROM actor.usr WHERE id = :u"),
                            {"u": circ["usr"]}).scalar() == STANDIN_USRNAME

    def loan_view(self, circ_id: int) -> dict:
        with self.engine.connect() as conn:
            circ = conn.execute(text("SELECT * FROM action.circulation WHERE id = :id"),
                                {"id": circ_id}).mappings().one()
            return {"open": circ["checkin_time"] is None, "records": 1,  # one row per circ
                    "returned_at": naive_local(circ["checkin_time"]),
                    "return_branch": self._shortname(conn, circ["checkin_lib"])}

    def _shortname(self, conn, org_id: int | None) -> str | None:
        if org_id is None:
            return None
        return conn.execute(text("SELECT shortname FROM actor.org_unit WHERE id = :id"),
                            {"id": org_id}).scalar()


def member_org_units(conn, member_codes: dict[str, str]) -> None:
    """One branch org unit per member code, under a system org unit of the consortium."""
    system = conn.execute(text(
        "INSERT INTO actor.org_unit (parent_ou, ou_type, shortname, name) "
        "VALUES (1, 2, 'ONECARD', 'Reading one-card members') RETURNING id")).scalar_one()
    for code, name in member_codes.items():
        conn.execute(text(
            "INSERT INTO actor.org_unit (parent_ou, ou_type, shortname, name) "
            "VALUES (:p, 3, :code, :name)"), {"p": system, "code": code, "name": name})
