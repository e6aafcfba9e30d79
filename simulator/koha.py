"""A Koha-shaped member database (Koha's own table and column names, a working subset of
kohastructure.sql) and the circulation desk operations Koha performs on it.

Runs on MariaDB (pymysql) and SQLite (the demo). Cursor columns are set from the database's
own clock, as Koha's `ON UPDATE CURRENT_TIMESTAMP` does.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import mysql

CONSORT = "CONSORT"  # the item type Koha members use for consortium copies of foreign books

metadata = MetaData()


def _stamp() -> Column:
    return Column(
        "timestamp",
        DateTime().with_variant(mysql.TIMESTAMP(), "mysql", "mariadb"),
        nullable=False,
        server_default=func.current_timestamp(),
        index=True,
    )


branches = Table(
    "branches", metadata,
    Column("branchcode", String(10), primary_key=True),
    Column("branchname", String(200), nullable=False),
)

borrowers = Table(
    "borrowers", metadata,
    Column("borrowernumber", Integer, primary_key=True, autoincrement=True),
    Column("cardnumber", String(32), unique=True),
    Column("surname", String(200)),
    Column("firstname", String(200)),
    Column("dateofbirth", Date),
    Column("sex", String(1)),
    Column("branchcode", String(10), nullable=False),
    Column("categorycode", String(10), nullable=False, default="PT"),
    Column("dateenrolled", Date),
    Column("updated_on", DateTime().with_variant(mysql.TIMESTAMP(), "mysql", "mariadb"),
           nullable=False, server_default=func.current_timestamp(), index=True),
)

items = Table(
    "items", metadata,
    Column("itemnumber", Integer, primary_key=True, autoincrement=True),
    Column("biblionumber", Integer, nullable=False, default=0),
    Column("barcode", String(20), unique=True),
    Column("homebranch", String(10)),
    Column("holdingbranch", String(10)),
    Column("onloan", Date),
    Column("datelastborrowed", Date),
    Column("datelastseen", DateTime),
    Column("itype", String(10)),
    _stamp(),
)


def _loan_columns(unique_item: bool) -> list[Column]:
    return [
        Column("issue_id", Integer, primary_key=True, autoincrement=unique_item),
        Column("borrowernumber", Integer),
        Column("itemnumber", Integer, unique=unique_item),
        Column("date_due", DateTime),
        Column("branchcode", String(10)),
        Column("returndate", DateTime),
        Column("checkin_library", String(10)),  # where it was checked in (Koha keeps it)
        Column("lastreneweddate", DateTime),
        Column("renewals_count", Integer, nullable=False, default=0),
        Column("issuedate", DateTime),
        _stamp(),
    ]


# AUTOINCREMENT: SQLite would otherwise reuse the id of a loan just moved to old_issues.
issues = Table("issues", metadata, *_loan_columns(unique_item=True), sqlite_autoincrement=True)
old_issues = Table("old_issues", metadata, *_loan_columns(unique_item=False))

# Koha's transfers: an item asked to travel between branches (here: a consortium book asked
# home by its owner, written by the hub into the ILS of the member holding it).
branchtransfers = Table(
    "branchtransfers", metadata,
    Column("branchtransfer_id", Integer, primary_key=True, autoincrement=True),
    Column("itemnumber", Integer, nullable=False),
    Column("daterequested", DateTime, nullable=False),
    Column("datesent", DateTime),
    Column("frombranch", String(10), nullable=False),
    Column("datearrived", DateTime),
    Column("datecancelled", DateTime),
    Column("tobranch", String(10), nullable=False),
    Column("comments", String(500)),
    Column("reason", String(30)),
)


class KohaDesk:
    """The circulation desk of one Koha member: what its staff's scans do to its tables."""

    kind = "koha"

    def __init__(self, engine: Engine, branch: str):
        self.engine = engine
        self.branch = branch

    def create_schema(self, member_codes: dict[str, str]) -> None:
        metadata.drop_all(self.engine)
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            conn.execute(insert(branches), [
                {"branchcode": code, "branchname": name} for code, name in member_codes.items()
            ])

    def add_readers(self, rows: list[dict]) -> list[int]:
        """rows: cardnumber, surname, firstname, dateofbirth, sex. Returns borrowernumbers."""
        with self.engine.begin() as conn:
            ids = []
            for r in rows:
                res = conn.execute(insert(borrowers).values(branchcode=self.branch, **r))
                ids.append(res.inserted_primary_key[0])
            return ids

    def add_items(self, barcodes: list[str], seen: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(items), [
                {"barcode": b, "homebranch": self.branch, "holdingbranch": self.branch,
                 "itype": "BK", "datelastseen": seen} for b in barcodes
            ])

    def _item(self, conn, barcode: str):
        return conn.execute(select(items).where(items.c.barcode == barcode)).first()

    def checkout(self, barcode: str, reader_id: int, at: datetime, due: datetime) -> int:
        with self.engine.begin() as conn:
            item = self._item(conn, barcode)
            res = conn.execute(insert(issues).values(
                borrowernumber=reader_id, itemnumber=item.itemnumber, date_due=due,
                branchcode=self.branch, issuedate=at, renewals_count=0,
                timestamp=func.current_timestamp()))
            conn.execute(update(items).where(items.c.itemnumber == item.itemnumber).values(
                onloan=due.date(), datelastborrowed=at.date(), holdingbranch=self.branch,
                datelastseen=at, timestamp=func.current_timestamp()))  # as Koha's AddIssue
            return res.inserted_primary_key[0]

    def checkin(self, barcode: str, at: datetime) -> None:
        """Koha's AddReturn: close any open loan here; a foreign book becomes a local copy."""
        with self.engine.begin() as conn:
            item = self._item(conn, barcode)
            if item is None:
                conn.execute(insert(items).values(
                    barcode=barcode, homebranch=self.branch, holdingbranch=self.branch,
                    itype=CONSORT, datelastseen=at, timestamp=func.current_timestamp()))
                return
            loan = conn.execute(select(issues).where(
                issues.c.itemnumber == item.itemnumber)).first()
            if loan is not None:
                row = dict(loan._mapping)
                row.update(returndate=at, checkin_library=self.branch,
                           timestamp=func.current_timestamp())
                conn.execute(insert(old_issues).values(**row))
                conn.execute(issues.delete().where(issues.c.issue_id == loan.issue_id))
            conn.execute(update(items).where(items.c.itemnumber == item.itemnumber).values(
                onloan=None, holdingbranch=self.branch, datelastseen=at,
                timestamp=func.current_timestamp()))

    def renew(self, barcode: str, at: datetime, due: datetime) -> None:
        with self.engine.begin() as conn:
            item = self._item(conn, barcode)
            conn.execute(update(issues).where(issues.c.itemnumber == item.itemnumber).values(
                date_due=due, lastreneweddate=at, renewals_count=issues.c.renewals_count + 1,
                timestamp=func.current_timestamp()))
            conn.execute(update(items).where(items.c.itemnumber == item.itemnumber).values(
                onloan=due.date(), timestamp=func.current_timestamp()))

    def send_transfers(self, at: datetime) -> int:
        """Staff pack the books asked to travel and send them (Koha's 'transfers to send')."""
        with self.engine.begin() as conn:
            res = conn.execute(update(branchtransfers).where(
                branchtransfers.c.frombranch == self.branch,
                branchtransfers.c.datesent.is_(None),
                branchtransfers.c.datecancelled.is_(None)).values(datesent=at))
            return res.rowcount

    def transfers(self, barcode: str) -> list[dict]:
        with self.engine.connect() as conn:
            item = self._item(conn, barcode)
            rows = conn.execute(select(branchtransfers).where(
                branchtransfers.c.itemnumber == item.itemnumber)
                .order_by(branchtransfers.c.branchtransfer_id)).all()
        return [dict(r._mapping) for r in rows]

    # What a test or the demo reads back: the owner's view of one book.
    def item_view(self, barcode: str) -> dict:
        with self.engine.connect() as conn:
            item = self._item(conn, barcode)
            open_loan = conn.execute(select(issues).where(
                issues.c.itemnumber == item.itemnumber)).first()
            return {"holding": item.holdingbranch, "onloan": item.onloan,
                    "open_loan": open_loan.issue_id if open_loan else None}

    def loan_view(self, issue_id: int) -> dict:
        with self.engine.connect() as conn:
            open_row = conn.execute(select(issues).where(issues.c.issue_id == issue_id)).first()
            old = conn.execute(select(old_issues).where(
                old_issues.c.issue_id == issue_id)).first()
            return {"open": open_row is not None,
                    "returned_at": old.returndate if old is not None else None}
