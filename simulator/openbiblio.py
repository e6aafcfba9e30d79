"""An OpenBiblio member database on MariaDB (OpenBiblio's own table and column names, a working
subset of its 1.0 install SQL) and what OpenBiblio's circulation desk does to it.

Facts used, from openbiblio/openbiblio-1.0 (install/1.0b/sql/*.sql, model/History.php,
model/Bookings.php):
- `biblio_copy`: copyid (AUTO_INCREMENT key), bibid, barcode_nmbr varchar(20), copy_desc,
  create_dt / last_change_dt DATETIME (whole seconds), `histid` — a pointer (UNIQUE) to the
  copy's current row of `biblio_status_hist`, and `siteid`, the copy's site.
- `biblio_status_hist`: histid (bigint AUTO_INCREMENT), bibid, copyid, status_cd char(3),
  status_begin_dt DATETIME. Rows are only ever inserted ("Cannot update history entries"):
  History::insert_el adds a row, then points the copy's histid at it, and for a booking sets
  out_histid / out_dt (checkout) or ret_histid / ret_dt (return).
- `biblio_status_dm` codes: in (checked in), out (checked out), mnd, dis, hld, lst, ln (on
  loan), ord, crt (shelving cart).
- `booking`: bookingid, bibid, book_dt and due_dt DATE (a due *day*), out_histid / out_dt,
  ret_histid / ret_dt, create_dt, last_change_dt, last_change_userid; its members in the link
  table `booking_member` (bookingid, mbrid; the two are its key). A loan is a booking that
  was checked out (out_histid set); it is returned when ret_histid is set. OpenBiblio records
  no branch where a book was lent or returned.
- `member`: mbrid, barcode_nmbr, create_dt, last_change_dt TIMESTAMP ON UPDATE, first_name,
  last_name, siteid (home site), classification; `site`: siteid, calendar, name, code.

Where this departs from OpenBiblio (the profile depends on none of it): InnoDB rather than
MyISAM (OpenBiblio ships biblio_copy and booking as MyISAM, which has no transactions: a member
on MyISAM would keep a half-applied command, so onboarding should convert those tables); only
the columns the hub or the desk uses; one `site` row per consortium member (as Koha has a
branch per member), so a copy can sit at another member's site.

Consortium conventions (the profile's, written here by the desk): a foreign book checked in here
becomes a copy with copy_desc CONSORT; a book this member lends to another member, or holds for
one, is on loan to the member CONSORTIUM (a booking, as DCB does with a virtual patron), which is
how the due day the hub sends is kept.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import mysql

from circhub.simulator.desk import Desk

CONSORT = "CONSORT"  # copy_desc of a consortium copy of a foreign book
CONSORTIUM_CARD = "CONSORTIUM"  # the member that books lent to other members are booked to
IN, OUT = "in", "out"

metadata = MetaData()
INNODB = {"mysql_engine": "InnoDB", "mariadb_engine": "InnoDB"}

site = Table(
    "site", metadata,
    Column("siteid", Integer, primary_key=True, autoincrement=True),
    Column("calendar", Integer, nullable=False, default=0),
    Column("name", Text, nullable=False),
    Column("code", String(10)),
    Column("delivery_note", Text, nullable=False, default=""),
    **INNODB,
)
member = Table(
    "member", metadata,
    Column("mbrid", Integer, primary_key=True, autoincrement=True),
    Column("barcode_nmbr", String(20), nullable=False, default=""),
    Column("create_dt", DateTime, nullable=False),
    Column("last_change_dt", mysql.TIMESTAMP(), nullable=False,
           server_default=func.current_timestamp(),
           server_onupdate=func.current_timestamp()),
    Column("last_change_userid", Integer, nullable=False, default=0),
    Column("first_name", String(50), nullable=False, default=""),
    Column("last_name", String(50), nullable=False, default=""),
    Column("classification", SmallInteger, nullable=False, default=1),
    Column("siteid", Integer, nullable=False),
    **INNODB,
)
biblio = Table(
    "biblio", metadata,
    Column("bibid", Integer, primary_key=True, autoincrement=True),
    Column("create_dt", DateTime, nullable=False),
    Column("last_change_dt", DateTime, nullable=False),
    Column("material_cd", SmallInteger, nullable=False, default=2),
    Column("collection_cd", SmallInteger, nullable=False, default=1),
    **INNODB,
)
biblio_copy = Table(
    "biblio_copy", metadata,
    Column("bibid", Integer, nullable=False, default=0, index=True),
    Column("copyid", Integer, primary_key=True, autoincrement=True),
    Column("create_dt", DateTime, nullable=False),
    Column("last_change_dt", DateTime, nullable=False),
    Column("last_change_userid", Integer, nullable=False, default=0),
    Column("barcode_nmbr", String(20), nullable=False, default="", index=True),
    Column("copy_desc", String(160)),
    Column("histid", Integer, unique=True),
    Column("siteid", SmallInteger, nullable=False, default=1),
    **INNODB,
)
biblio_status_hist = Table(
    "biblio_status_hist", metadata,
    Column("histid", BigInteger, primary_key=True, autoincrement=True),
    Column("bibid", Integer, nullable=False),
    Column("copyid", Integer, nullable=False),
    Column("status_cd", mysql.CHAR(3), nullable=False),
    Column("status_begin_dt", DateTime, nullable=False),
    **INNODB,
)
booking = Table(
    "booking", metadata,
    Column("bookingid", BigInteger, primary_key=True, autoincrement=True),
    Column("bibid", Integer, nullable=False, index=True),
    Column("book_dt", Date, nullable=False),
    Column("due_dt", Date, nullable=False),
    Column("out_histid", BigInteger, index=True),
    Column("out_dt", DateTime),
    Column("ret_histid", BigInteger, index=True),
    Column("ret_dt", DateTime),
    Column("create_dt", DateTime, nullable=False),
    Column("last_change_dt", DateTime, nullable=False),
    Column("last_change_userid", Integer, nullable=False, default=0),
    **INNODB,
)
booking_member = Table(
    "booking_member", metadata,
    Column("bookingid", BigInteger, primary_key=True, autoincrement=False),
    Column("mbrid", Integer, primary_key=True, autoincrement=False),
    **INNODB,
)


class OpenBiblioDesk(Desk):
    kind = "openbiblio"

    def member_constants(self) -> dict:
        """What the member's config gives the openbiblio profile: its own site code (OpenBiblio
        records no lending branch on a booking, and a copy's site moves with the book)."""
        return {"site": self.branch}

    def create_schema(self, member_codes: dict[str, str]) -> None:
        metadata.drop_all(self.engine)
        metadata.create_all(self.engine)
        now = func.now()
        with self.engine.begin() as conn:
            conn.execute(insert(site), [{"name": name, "code": code}
                                        for code, name in member_codes.items()])
            conn.execute(insert(member).values(
                barcode_nmbr=CONSORTIUM_CARD, create_dt=now, last_name="Consortium",
                first_name="", siteid=self._site(conn, self.branch)))

    def _site(self, conn, code: str) -> int:
        return conn.execute(select(site.c.siteid).where(site.c.code == code)).scalar_one()

    def add_readers(self, rows: list[dict]) -> list[int]:
        """rows as KohaDesk takes them; the ID card is the library card (barcode_nmbr)."""
        with self.engine.begin() as conn:
            here = self._site(conn, self.branch)
            return [conn.execute(insert(member).values(
                barcode_nmbr=r["cardnumber"], last_name=r.get("surname") or "",
                first_name=r.get("firstname") or "",
                create_dt=r.get("dateenrolled") or datetime.now(), siteid=here,
            )).inserted_primary_key[0] for r in rows]

    def add_items(self, barcodes: list[str], seen: datetime) -> None:
        with self.engine.begin() as conn:
            for barcode in barcodes:
                self._new_copy(conn, barcode, None, seen)

    def _new_copy(self, conn, barcode: str, desc: str | None, at: datetime) -> int:
        """Cataloguing: a bibliography, its copy, and the copy's first status (checked in)."""
        bibid = conn.execute(insert(biblio).values(create_dt=at, last_change_dt=at)
                             ).inserted_primary_key[0]
        copyid = conn.execute(insert(biblio_copy).values(
            bibid=bibid, barcode_nmbr=barcode, copy_desc=desc, create_dt=at,
            last_change_dt=func.now(), siteid=self._site(conn, self.branch))
        ).inserted_primary_key[0]
        self._status(conn, copyid, IN, at)
        return copyid

    def _copy(self, conn, barcode: str):
        return conn.execute(select(biblio_copy).where(
            biblio_copy.c.barcode_nmbr == barcode)).first()

    def _status(self, conn, copyid: int, code: str, at: datetime, moved_here: bool = False
                ) -> int:
        """History::insert_el: a new status row, and the copy points at it."""
        copy = conn.execute(select(biblio_copy).where(biblio_copy.c.copyid == copyid)).one()
        histid = conn.execute(insert(biblio_status_hist).values(
            bibid=copy.bibid, copyid=copyid, status_cd=code, status_begin_dt=at)
        ).inserted_primary_key[0]
        values = {"histid": histid, "last_change_dt": func.now()}
        if moved_here:
            values["siteid"] = self._site(conn, self.branch)
        conn.execute(update(biblio_copy).where(biblio_copy.c.copyid == copyid).values(**values))
        return histid

    def _open_booking(self, conn, copy):
        """The booking the copy's current status is the checkout of, if still out."""
        return conn.execute(select(booking).where(
            booking.c.out_histid == copy.histid, booking.c.ret_histid.is_(None))).first()

    def checkout(self, barcode: str, reader_id: int, at: datetime, due: datetime) -> str:
        """A booking for today, checked out at once (quick checkout); the loan's key is
        bookingid-mbrid, as the profile reads it."""
        with self.engine.begin() as conn:
            copy = self._copy(conn, barcode)
            held_for_a_member = self._open_booking(conn, copy)
            histid = self._status(conn, copy.copyid, OUT, at, moved_here=True)
            if held_for_a_member is not None:
                self._returned(conn, held_for_a_member, histid, at)
            bookingid = conn.execute(insert(booking).values(
                bibid=copy.bibid, book_dt=at.date(), due_dt=due.date(), out_histid=histid,
                out_dt=at, create_dt=at, last_change_dt=func.now())).inserted_primary_key[0]
            conn.execute(insert(booking_member).values(bookingid=bookingid, mbrid=reader_id))
            return f"{bookingid}-{reader_id}"

    def _returned(self, conn, open_booking, histid: int, at: datetime) -> None:
        conn.execute(update(booking).where(
            booking.c.bookingid == open_booking.bookingid).values(
            ret_histid=histid, ret_dt=at, last_change_dt=func.now()))

    def checkin(self, barcode: str, at: datetime) -> None:
        """Check-in: the copy is 'in' here, its booking returned; a foreign book becomes a
        consortium copy."""
        with self.engine.begin() as conn:
            copy = self._copy(conn, barcode)
            if copy is None:
                self._new_copy(conn, barcode, CONSORT, at)
                return
            open_booking = self._open_booking(conn, copy)
            histid = self._status(conn, copy.copyid, IN, at, moved_here=True)
            if open_booking is not None:
                self._returned(conn, open_booking, histid, at)

    def renew(self, barcode: str, at: datetime, due: datetime) -> None:
        with self.engine.begin() as conn:
            copy = self._copy(conn, barcode)
            conn.execute(update(booking).where(
                booking.c.out_histid == copy.histid, booking.c.ret_histid.is_(None)).values(
                due_dt=due.date(), last_change_dt=func.now()))

    # What a test reads back: the owner's view of one book, and of one loan.
    def item_view(self, barcode: str) -> dict:
        with self.engine.connect() as conn:
            copy = self._copy(conn, barcode)
            status = conn.execute(select(biblio_status_hist).where(
                biblio_status_hist.c.histid == copy.histid)).one()
            held = conn.execute(select(site.c.code).where(
                site.c.siteid == copy.siteid)).scalar_one()
            open_booking = self._open_booking(conn, copy)
            return {"holding": held, "status": status.status_cd.strip(),
                    "onloan": open_booking.due_dt if open_booking else None,
                    "open_loan": open_booking.bookingid if open_booking else None}

    def loan_view(self, loan_id: str) -> dict:
        bookingid = int(str(loan_id).split("-")[0])
        with self.engine.connect() as conn:
            row = conn.execute(select(booking).where(booking.c.bookingid == bookingid)).one()
            return {"open": row.ret_histid is None, "returned_at": row.ret_dt}
