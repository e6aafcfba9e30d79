"""A Polaris-style member database: SQL Server shaped, served here by PostgreSQL and reached
through pyodbc (`postgresql+pyodbc://`, see circhub.connections.odbc), and its circulation desk.

Polaris's own names where the hub reads them: Polaris.Patrons / PatronRegistration,
CircItemRecords, ItemCheckouts (open loans only: a check-in deletes the row), Organizations
(branch codes are their Abbreviation), MaterialTypes, BibliographicRecords.BrowseTitle, and the
transaction log PolarisTransactions.Polaris.TransactionHeaders with TransactionTypeID 6001
(checkout) and 6002 (check-in). The schema "PolarisTransactions.Polaris" is one PostgreSQL
schema with a dot in its name; on SQL Server the same name is database PolarisTransactions,
schema Polaris, and SQLAlchemy's mssql dialect renders it [PolarisTransactions].[Polaris].

Where this is Polaris *style* rather than Polaris (the profile depends on these):
- Polaris keeps a transaction's patron, item, due date etc. in TransactionDetails rows
  (subtypes 6, 38, ...); the style flattens them onto TransactionHeaders as columns.
- A check-in header carries the CheckOutDate of the loan it ends; a loan is identified by
  its checkout header's TransactionID, found by (ItemRecordID, checkout time).
- Transfers between branches are rows of Polaris.ItemTransits (item, from, to, sent,
  received), the item In-Transit (ItemStatusID 6) meanwhile.
- Server-clock change columns: TransactionHeaders.TransactionDate (TranClientDate is the
  workstation's time, which offline circulation backdates), ModificationDate on
  CircItemRecords and ItemCheckouts. Polaris has no such column on ItemCheckouts; a member
  would add it with a trigger, as an Evergreen member adds circulation.last_update_time.

Organizations are Polaris's tree: branches (OrganizationCodeID 3) under a library (2). Patrons
have a patron code (Polaris.PatronCodes, the patron's category); code 1 is the readers'.

What a member agrees to create for the consortium (`prepare_consortium`, the profile's
`[[prepare]]`, `circhub prepare`): a branch per other member (Abbreviation = its code) beside
its own, and the consortium stand-in: a patron code described CIRCHUB and one patron of it
(barcode CIRCHUB, with its registration). While the owner's book is lent at another member,
the owner's ItemCheckouts shows it checked out to that patron at the holder's branch, due when
the real loan is due (as Koha's issue and Evergreen's circulation to their stand-ins).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.schema import CreateSchema, DropSchema

from circhub.simulator.desk import Desk

CONSORT = "CONSORT"  # MaterialTypes.Description of consortium copies (the profile's marker)
STAND_IN = "CIRCHUB"  # PatronCodes.Description and Patrons.Barcode of the consortium stand-in
READER_CODE = 1  # PatronCodeID of the member's readers
LIBRARY, BRANCH = 2, 3  # OrganizationCodeID
BOOK_TYPE, CONSORT_TYPE = 1, 2  # MaterialTypeID
CHECKOUT, CHECKIN = 6001, 6002  # TransactionTypeID
ITEM_IN, ITEM_OUT, IN_TRANSIT = 1, 2, 6  # ItemStatusID: In, Out, In-Transit
POLARIS, TRANSACTIONS = "Polaris", "PolarisTransactions.Polaris"

metadata = MetaData()
_now = func.current_timestamp

organizations = Table(
    "Organizations", metadata,
    Column("OrganizationID", Integer, primary_key=True),
    Column("ParentOrganizationID", Integer),
    Column("OrganizationCodeID", Integer, nullable=False, default=BRANCH),
    Column("Name", String(50), nullable=False),
    Column("Abbreviation", String(15), nullable=False, unique=True),
    schema=POLARIS,
)
patron_codes = Table(
    "PatronCodes", metadata,
    Column("PatronCodeID", Integer, primary_key=True),
    Column("Description", String(80), nullable=False),
    schema=POLARIS,
)
patrons = Table(
    "Patrons", metadata,
    Column("PatronID", Integer, primary_key=True),
    Column("PatronCodeID", Integer, nullable=False, default=READER_CODE),
    Column("OrganizationID", Integer, nullable=False),
    Column("Barcode", String(20), unique=True),
    schema=POLARIS,
)
patron_registration = Table(
    "PatronRegistration", metadata,
    Column("PatronID", Integer, primary_key=True, autoincrement=False),
    Column("NameFirst", String(32)),
    Column("NameLast", String(32)),
    Column("Birthdate", Date),
    Column("Gender", String(1)),
    Column("RegistrationDate", DateTime),
    Column("UpdateDate", DateTime, nullable=False, server_default=_now()),
    schema=POLARIS,
)
material_types = Table(
    "MaterialTypes", metadata,
    Column("MaterialTypeID", Integer, primary_key=True),
    Column("Description", String(80), nullable=False),
    schema=POLARIS,
)
bib_records = Table(
    "BibliographicRecords", metadata,
    Column("BibliographicRecordID", Integer, primary_key=True),
    Column("BrowseTitle", String(255)),
    schema=POLARIS,
)
items = Table(
    "CircItemRecords", metadata,
    Column("ItemRecordID", Integer, primary_key=True),
    Column("Barcode", String(20), unique=True),
    Column("AssociatedBibRecordID", Integer),
    Column("AssignedBranchID", Integer, nullable=False),
    Column("LastUseBranchID", Integer),
    Column("ItemStatusID", Integer, nullable=False, default=ITEM_IN),
    Column("MaterialTypeID", Integer, nullable=False),
    Column("CheckInDate", DateTime),
    Column("ModificationDate", DateTime, nullable=False, server_default=_now()),
    schema=POLARIS,
)
checkouts = Table(
    "ItemCheckouts", metadata,
    Column("ItemRecordID", Integer, primary_key=True, autoincrement=False),
    Column("PatronID", Integer, nullable=False),
    Column("OrganizationID", Integer, nullable=False),
    Column("CheckOutDate", DateTime, nullable=False),
    Column("DueDate", DateTime, nullable=False),
    Column("Renewals", Integer, nullable=False, default=0),
    Column("ModificationDate", DateTime, nullable=False, server_default=_now()),
    schema=POLARIS,
)
headers = Table(
    "TransactionHeaders", metadata,
    Column("TransactionID", Integer, primary_key=True),
    Column("TransactionTypeID", Integer, nullable=False),
    Column("TranClientDate", DateTime, nullable=False),
    Column("TransactionDate", DateTime, nullable=False, server_default=_now()),
    Column("OrganizationID", Integer, nullable=False),
    Column("PatronID", Integer),
    Column("ItemRecordID", Integer),
    Column("CheckOutDate", DateTime),
    Column("DueDate", DateTime),
    Column("Renewals", Integer),
    schema=TRANSACTIONS,
)
# A book sent to another branch: one row per transfer, received when it arrives. Polaris keeps
# in-transit items in its own transit tables (not verified here); the style keeps this one.
item_transits = Table(
    "ItemTransits", metadata,
    Column("ItemTransitID", Integer, primary_key=True),
    Column("ItemRecordID", Integer, nullable=False),
    Column("FromOrganizationID", Integer, nullable=False),
    Column("ToOrganizationID", Integer, nullable=False),
    Column("SentDate", DateTime, nullable=False),
    Column("ReceivedDate", DateTime),
    schema=POLARIS,
)


class PolarisDesk(Desk):
    """The circulation desk of one Polaris-style member (`branch`: its Abbreviation)."""

    kind = "polaris"

    def create_schema(self, member_codes: dict[str, str]) -> None:
        """Polaris as installed for this member (its library and its own branch), then what it
        agreed to create for the other members and the consortium stand-in."""
        with self.engine.begin() as conn:
            for schema in (POLARIS, TRANSACTIONS):
                conn.execute(DropSchema(schema, cascade=True, if_exists=True))
                conn.execute(CreateSchema(schema))
            metadata.create_all(conn)
            library = conn.execute(insert(organizations).values(
                OrganizationCodeID=LIBRARY, Abbreviation="ONECARD",
                Name="Reading one-card members")).inserted_primary_key[0]
            conn.execute(insert(organizations).values(
                ParentOrganizationID=library, Abbreviation=self.branch,
                Name=member_codes.get(self.branch, self.branch)[:50]))
            conn.execute(insert(material_types), [
                {"MaterialTypeID": BOOK_TYPE, "Description": "Book"},
                {"MaterialTypeID": CONSORT_TYPE, "Description": CONSORT},
            ])
            # the readers' code, numbered by the table's identity (1): the stand-in's code is
            # added the same way at onboarding, so an explicit number would collide with it
            conn.execute(insert(patron_codes).values(Description="Adult"))
        self.prepare_consortium({c: n for c, n in member_codes.items() if c != self.branch})

    def prepare_consortium(self, member_names: dict[str, str]) -> None:
        """What the member agrees to create (`circhub prepare`, the profile's [[prepare]]): a
        branch per other member beside its own, and the stand-in its away loans are to."""
        with self.engine.begin() as conn:
            parent = conn.execute(select(organizations.c.ParentOrganizationID).where(
                organizations.c.Abbreviation == self.branch)).scalar_one()
            have = set(conn.execute(select(organizations.c.Abbreviation)).scalars())
            missing = [{"Abbreviation": code, "Name": name[:50], "ParentOrganizationID": parent}
                       for code, name in member_names.items() if code not in have]
            if missing:
                conn.execute(insert(organizations), missing)
            if self._stand_in(conn) is None:
                self._create_stand_in(conn)

    def _create_stand_in(self, conn) -> None:
        code = conn.execute(insert(patron_codes).values(
            Description=STAND_IN)).inserted_primary_key[0]
        patron = conn.execute(insert(patrons).values(
            PatronCodeID=code, OrganizationID=self._org(conn),
            Barcode=STAND_IN)).inserted_primary_key[0]
        conn.execute(insert(patron_registration).values(
            PatronID=patron, NameLast="Consortium", NameFirst="circhub"))

    def _stand_in(self, conn) -> int | None:
        return conn.execute(select(patrons.c.PatronID).where(
            patrons.c.Barcode == STAND_IN)).scalar()

    def _org(self, conn, abbreviation: str | None = None) -> int:
        return conn.execute(select(organizations.c.OrganizationID).where(
            organizations.c.Abbreviation == (abbreviation or self.branch))).scalar_one()

    def add_readers(self, rows: list[dict]) -> list[int]:
        """rows: cardnumber, surname, firstname, dateofbirth, sex, dateenrolled (Koha-named,
        as the world makes them). Returns PatronIDs."""
        ids = []
        with self.engine.begin() as conn:
            home = self._org(conn)
            for r in rows:
                patron_id = conn.execute(insert(patrons).values(
                    OrganizationID=home, Barcode=r["cardnumber"])).inserted_primary_key[0]
                conn.execute(insert(patron_registration).values(
                    PatronID=patron_id, NameLast=r.get("surname"), NameFirst=r.get("firstname"),
                    Birthdate=r.get("dateofbirth"), Gender=r.get("sex"),
                    RegistrationDate=r.get("dateenrolled")))
                ids.append(patron_id)
        return ids

    def add_items(self, barcodes: list[str], seen: datetime) -> None:
        with self.engine.begin() as conn:
            here = self._org(conn)
            for barcode in barcodes:
                bib = conn.execute(insert(bib_records).values(
                    BrowseTitle=f"Title of {barcode}")).inserted_primary_key[0]
                conn.execute(insert(items).values(
                    Barcode=barcode, AssociatedBibRecordID=bib, AssignedBranchID=here,
                    LastUseBranchID=here, MaterialTypeID=BOOK_TYPE, CheckInDate=seen))

    def _item(self, conn, barcode: str):
        return conn.execute(select(items).where(items.c.Barcode == barcode)).first()

    def _open(self, conn, item_id: int):
        return conn.execute(select(checkouts).where(checkouts.c.ItemRecordID == item_id)).first()

    def checkout(self, barcode: str, reader_id: int, at: datetime, due: datetime) -> int:
        """Returns the TransactionID of the checkout: the loan's id for the hub. An item still
        checked out (to the consortium stand-in, the hub not yet told it came home) is checked
        in first, as Polaris's staff client offers when an item is out to another patron."""
        if self._checked_out(barcode):
            self.checkin(barcode, at)
        with self.engine.begin() as conn:
            here, item = self._org(conn), self._item(conn, barcode)
            loan_id = conn.execute(insert(headers).values(
                TransactionTypeID=CHECKOUT, TranClientDate=at, OrganizationID=here,
                PatronID=reader_id, ItemRecordID=item.ItemRecordID, DueDate=due,
            )).inserted_primary_key[0]
            conn.execute(insert(checkouts).values(
                ItemRecordID=item.ItemRecordID, PatronID=reader_id, OrganizationID=here,
                CheckOutDate=at, DueDate=due, Renewals=0))
            conn.execute(update(items).where(items.c.ItemRecordID == item.ItemRecordID).values(
                ItemStatusID=ITEM_OUT, LastUseBranchID=here, ModificationDate=_now()))
            return loan_id

    def _checked_out(self, barcode: str) -> bool:
        with self.engine.connect() as conn:
            item = self._item(conn, barcode)
            return item is not None and self._open(conn, item.ItemRecordID) is not None

    def checkin(self, barcode: str, at: datetime) -> None:
        """Log the check-in, end the open checkout (a reader's, or the stand-in's of a book back
        from another member); a foreign book becomes a consortium copy."""
        with self.engine.begin() as conn:
            here, item = self._org(conn), self._item(conn, barcode)
            if item is None:
                conn.execute(insert(items).values(
                    Barcode=barcode, AssignedBranchID=here, LastUseBranchID=here,
                    MaterialTypeID=CONSORT_TYPE, CheckInDate=at))
                return
            loan = self._open(conn, item.ItemRecordID)
            if loan is not None:
                conn.execute(insert(headers).values(
                    TransactionTypeID=CHECKIN, TranClientDate=at, OrganizationID=here,
                    PatronID=loan.PatronID, ItemRecordID=item.ItemRecordID,
                    CheckOutDate=loan.CheckOutDate, DueDate=loan.DueDate,
                    Renewals=loan.Renewals))
                conn.execute(delete(checkouts).where(
                    checkouts.c.ItemRecordID == item.ItemRecordID))
            conn.execute(update(items).where(items.c.ItemRecordID == item.ItemRecordID).values(
                ItemStatusID=ITEM_IN, LastUseBranchID=here, CheckInDate=at,
                ModificationDate=_now()))

    def renew(self, barcode: str, at: datetime, due: datetime) -> None:
        with self.engine.begin() as conn:
            item = self._item(conn, barcode)
            conn.execute(update(checkouts).where(
                checkouts.c.ItemRecordID == item.ItemRecordID).values(
                DueDate=due, Renewals=checkouts.c.Renewals + 1, ModificationDate=_now()))

    # What a test or the demo reads back: the owner's view of one book.
    def item_view(self, barcode: str) -> dict:
        """The due day of its checkout, whoever it is to; its open loan only when that is a
        reader's (the stand-in's checkout, the book lent at another member, is `lent_to`'s)."""
        with self.engine.connect() as conn:
            item = self._item(conn, barcode)
            loan = self._open(conn, item.ItemRecordID)
            readers = loan is not None and loan.PatronID != self._stand_in(conn)
            return {"holding": self._abbreviation(conn, item.LastUseBranchID),
                    "status": item.ItemStatusID,
                    "onloan": loan.DueDate.date() if loan else None,
                    "open_loan": self._loan_id(conn, loan) if readers else None}

    def lent_to(self, barcode: str) -> str | None:
        """The barcode of the patron the book is checked out to here, if it is (the
        stand-in's while the owner's book is lent at another member)."""
        with self.engine.connect() as conn:
            return conn.execute(select(patrons.c.Barcode).select_from(
                checkouts.join(items, items.c.ItemRecordID == checkouts.c.ItemRecordID)
                .join(patrons, patrons.c.PatronID == checkouts.c.PatronID))
                .where(items.c.Barcode == barcode)).scalar()

    def _loan_id(self, conn, loan) -> int:
        return conn.execute(select(headers.c.TransactionID).where(
            headers.c.TransactionTypeID == CHECKOUT, headers.c.ItemRecordID == loan.ItemRecordID,
            headers.c.TranClientDate == loan.CheckOutDate)).scalar_one()

    def loan_view(self, loan_id: int) -> dict:
        with self.engine.connect() as conn:
            out = conn.execute(select(headers).where(headers.c.TransactionID == loan_id)).one()
            backs = conn.execute(select(headers).where(
                headers.c.TransactionTypeID == CHECKIN,
                headers.c.ItemRecordID == out.ItemRecordID,
                headers.c.CheckOutDate == out.TranClientDate)).all()
            back = backs[0] if backs else None
            return {"open": back is None, "records": len(backs) or 1,  # returned twice: 2
                    "returned_at": back.TranClientDate if back else None,
                    "return_branch": self._abbreviation(conn, back.OrganizationID)
                    if back else None}

    def _abbreviation(self, conn, org_id: int | None) -> str | None:
        if org_id is None:
            return None
        return conn.execute(select(organizations.c.Abbreviation).where(
            organizations.c.OrganizationID == org_id)).scalar()
