"""A member's Koha (the tables of `simulator.koha_schema`, both generations) and the circulation
desk that writes rows the way Koha's own `C4/Circulation.pm` does (Koha-Community/Koha):

- AddIssue: an `issues` row (borrowernumber, itemnumber, issuedate, date_due, branchcode,
  issuer_id, onsite_checkout, auto_renew); the item gets issues + 1, holdingbranch = the issuing
  branch, onloan = the due date, datelastborrowed = today, datelastseen = now, itemlost = 0;
  a `statistics` row of type 'issue' (UpdateStats: branch, itemnumber, borrowernumber,
  itemtype, location, ccode, categorycode).
- AddReturn: MarkIssueReturned moves the `issues` row to `old_issues` with returndate (and
  checkin_library where the column exists, Koha bug 33641) and deletes it from `issues`; the
  item gets onloan NULL, holdingbranch = the return branch (UpdateHoldingbranch), datelastseen
  = now; a `statistics` row of type 'return' with the branch. An item checked in at its
  transfer's destination ends the transfer (datearrived). Returned away from its homebranch
  under the 'homebranch' return policy (Koha's default circulation rule `returnbranch`), the
  item is sent home: a `branchtransfers` row from here to its homebranch, reason ReturnToHome.
- AddRenewal: date_due, renewals_count + 1, lastreneweddate = now on the issue; the item's
  onloan = the new due date and renewals + 1; a `statistics` row of type 'renew'.

A foreign book checked in here (a barcode this Koha does not have) is catalogued on the spot as
a consortium copy: a catalogue record and an item of type CONSORT, homed here.

What Koha ships and a real catalogue has, the desk has too: the branch of its own library, the
categories (a staff category of type S, a statistical one of type X), a staff login, a
statistical patron and the AnonymousPatron (system preference). What a member agrees to create
for the consortium (`prepare_consortium`: a branch per other member, the stand-in category and
patron) is what `circhub prepare` creates; tests leave it out to see the write-back fail.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, func, insert, select, update

from circhub.simulator.koha_schema import BEFORE_33641, CURRENT

CONSORT = "CONSORT"  # the item type Koha members use for consortium copies of foreign books
STAND_IN = "CIRCHUB"  # category and card of the patron standing in for the consortium
STAFF, STATISTICAL, ANONYMOUS = "admin", "STATS", "ANONYMOUS"  # cards of the system accounts

metadata = CURRENT
branches, categories, borrowers = (CURRENT.tables[n] for n in ("branches", "categories",
                                                                "borrowers"))
items, issues, old_issues = (CURRENT.tables[n] for n in ("items", "issues", "old_issues"))
branchtransfers, statistics = CURRENT.tables["branchtransfers"], CURRENT.tables["statistics"]
biblio, biblioitems = CURRENT.tables["biblio"], CURRENT.tables["biblioitems"]
deleteditems, deletedborrowers = CURRENT.tables["deleteditems"], CURRENT.tables[
    "deletedborrowers"]
systempreferences = CURRENT.tables["systempreferences"]


def catalogue_record(conn, title: str, at: datetime, itype: str = "BK") -> tuple[int, int]:
    """A biblio and its biblioitems row: (biblionumber, biblioitemnumber)."""
    bib = conn.execute(insert(biblio).values(
        title=title, datecreated=at.date())).inserted_primary_key[0]
    bi = conn.execute(insert(biblioitems).values(
        biblionumber=bib, itemtype=itype)).inserted_primary_key[0]
    return bib, bi


def catalogue(conn, barcodes: list[str], branch: str, seen: datetime, itype: str = "BK",
              **item) -> None:
    """Items with their catalogue records (items.biblionumber / biblioitemnumber are FKs)."""
    for barcode in barcodes:
        bib, bi = catalogue_record(conn, f"Title {barcode}", seen, itype)
        conn.execute(insert(items).values(
            biblionumber=bib, biblioitemnumber=bi, barcode=barcode, homebranch=branch,
            holdingbranch=branch, itype=itype, datelastseen=seen, dateaccessioned=seen.date(),
            **item))


class KohaDesk:
    """The circulation desk of one Koha member: what its staff's scans do to its tables."""

    kind = "koha"
    checkin_library = True  # the generation with Koha bug 33641
    return_policy = "homebranch"  # Koha's default `returnbranch` rule

    def __init__(self, engine: Engine, branch: str):
        self.engine = engine
        self.branch = branch
        self.md = CURRENT if self.checkin_library else BEFORE_33641
        self.t = self.md.tables

    def create_schema(self, member_codes: dict[str, str]) -> None:
        """Koha as installed for this member, then what it agreed to create for the others."""
        self.md.drop_all(self.engine)
        self.md.create_all(self.engine)
        with self.engine.begin() as conn:
            conn.execute(insert(branches).values(
                branchcode=self.branch, branchname=member_codes.get(self.branch, self.branch)))
            conn.execute(insert(categories), [
                {"categorycode": "PT", "description": "Patron", "category_type": "A"},
                {"categorycode": "S", "description": "Staff", "category_type": "S"},
                {"categorycode": "ST", "description": "Statistical", "category_type": "X"}])
            ids = {}
            for card, cat, flags in ((STAFF, "S", 1), (STATISTICAL, "ST", None),
                                     (ANONYMOUS, "PT", None)):
                ids[card] = conn.execute(insert(borrowers).values(
                    cardnumber=card, userid=card.lower() if flags else None, surname=card,
                    branchcode=self.branch, categorycode=cat, flags=flags,
                )).inserted_primary_key[0]
            conn.execute(insert(systempreferences).values(
                variable="AnonymousPatron", value=str(ids[ANONYMOUS]), type="Integer"))
        others = {code: name for code, name in member_codes.items() if code != self.branch}
        self.prepare_consortium(others)

    def prepare_consortium(self, member_names: dict[str, str]) -> None:
        """What the member agrees to create (`circhub prepare`): a branch per other member, so
        its items can be held there, and the stand-in patron its away loans are issued to."""
        with self.engine.begin() as conn:
            have = set(conn.execute(select(branches.c.branchcode)).scalars())
            missing = [{"branchcode": code, "branchname": f"Consortium: {name}",
                        "pickup_location": 0, "public": 0}
                       for code, name in member_names.items() if code not in have]
            if missing:
                conn.execute(insert(branches), missing)
            if conn.execute(select(categories).where(
                    categories.c.categorycode == STAND_IN)).first() is None:
                conn.execute(insert(categories).values(
                    categorycode=STAND_IN, description="Consortium stand-in",
                    category_type="I"))
                conn.execute(insert(borrowers).values(
                    cardnumber=STAND_IN, surname="Consortium", branchcode=self.branch,
                    categorycode=STAND_IN))

    def add_readers(self, rows: list[dict]) -> list[int]:
        """rows: cardnumber, surname, firstname, dateofbirth, sex. Returns borrowernumbers."""
        with self.engine.begin() as conn:
            return [conn.execute(insert(borrowers).values(
                branchcode=self.branch, categorycode="PT", **r)).inserted_primary_key[0]
                for r in rows]

    def add_items(self, barcodes: list[str], seen: datetime) -> None:
        with self.engine.begin() as conn:
            catalogue(conn, barcodes, self.branch, seen)

    def _item(self, conn, barcode: str):
        return conn.execute(select(items).where(items.c.barcode == barcode)).first()

    def _stat(self, conn, kind: str, item, at: datetime, borrower: int | None) -> None:
        """C4::Stats::UpdateStats, as AddIssue / AddReturn / AddRenewal call it."""
        category = conn.execute(select(borrowers.c.categorycode).where(
            borrowers.c.borrowernumber == borrower)).scalar() if borrower else None
        conn.execute(insert(statistics).values(
            datetime=at, branch=self.branch, type=kind, itemnumber=item.itemnumber,
            itemtype=item.itype, location=item.location, ccode=item.ccode,
            borrowernumber=borrower, categorycode=category, interface="intranet"))

    def checkout(self, barcode: str, reader_id: int, at: datetime, due: datetime) -> int:
        """AddIssue."""
        with self.engine.begin() as conn:
            item = self._item(conn, barcode)
            res = conn.execute(insert(self.t["issues"]).values(
                borrowernumber=reader_id, itemnumber=item.itemnumber, date_due=due,
                branchcode=self.branch, issuedate=at, timestamp=func.current_timestamp()))
            conn.execute(update(items).where(items.c.itemnumber == item.itemnumber).values(
                onloan=due.date(), datelastborrowed=at.date(), holdingbranch=self.branch,
                datelastseen=at, itemlost=0, issues=func.coalesce(items.c.issues, 0) + 1))
            self._stat(conn, "issue", item, at, reader_id)
            return res.inserted_primary_key[0]

    def checkin(self, barcode: str, at: datetime) -> None:
        """AddReturn: close any open loan here; a foreign book becomes a local copy."""
        with self.engine.begin() as conn:
            item = self._item(conn, barcode)
            if item is None:
                catalogue(conn, [barcode], self.branch, at, itype=CONSORT)
                return
            loan = conn.execute(select(self.t["issues"]).where(
                self.t["issues"].c.itemnumber == item.itemnumber)).first()
            if loan is not None:
                self._mark_returned(conn, loan, at)
            conn.execute(update(items).where(items.c.itemnumber == item.itemnumber).values(
                onloan=None, holdingbranch=self.branch, datelastseen=at))
            self._stat(conn, "return", item, at, loan.borrowernumber if loan else None)
            self._transfer_on_return(conn, item, at)

    def _mark_returned(self, conn, loan, at: datetime) -> None:
        """MarkIssueReturned: the issue moves to old_issues, keeping its issue_id."""
        row = dict(loan._mapping)
        row.update(returndate=at, timestamp=func.current_timestamp())
        if self.checkin_library:
            row["checkin_library"] = self.branch
        conn.execute(insert(self.t["old_issues"]).values(**row))
        conn.execute(self.t["issues"].delete().where(
            self.t["issues"].c.issue_id == loan.issue_id))

    def _transfer_on_return(self, conn, item, at: datetime) -> None:
        """Arrival ends the item's transfer; away from home under 'homebranch', send it home."""
        open_transfer = (branchtransfers.c.itemnumber == item.itemnumber,
                         branchtransfers.c.datearrived.is_(None),
                         branchtransfers.c.datecancelled.is_(None))
        arrived = conn.execute(update(branchtransfers).where(
            *open_transfer, branchtransfers.c.tobranch == self.branch).values(datearrived=at))
        if arrived.rowcount or item.homebranch == self.branch:
            return
        if self.return_policy == "homebranch" and conn.execute(
                select(branchtransfers.c.branchtransfer_id).where(*open_transfer)).first() is None:
            conn.execute(insert(branchtransfers).values(
                itemnumber=item.itemnumber, daterequested=at, datesent=at,
                frombranch=self.branch, tobranch=item.homebranch, reason="ReturnToHome"))

    def renew(self, barcode: str, at: datetime, due: datetime) -> None:
        """AddRenewal."""
        with self.engine.begin() as conn:
            item = self._item(conn, barcode)
            open_loans = self.t["issues"]
            loan = conn.execute(select(open_loans).where(
                open_loans.c.itemnumber == item.itemnumber)).first()
            conn.execute(update(open_loans).where(open_loans.c.issue_id == loan.issue_id).values(
                date_due=due, lastreneweddate=at, renewals_count=open_loans.c.renewals_count + 1))
            conn.execute(update(items).where(items.c.itemnumber == item.itemnumber).values(
                onloan=due.date(), renewals=func.coalesce(items.c.renewals, 0) + 1))
            self._stat(conn, "renew", item, at, loan.borrowernumber)

    def delete_patron(self, borrowernumber: int) -> None:
        """Koha's patron deletion: the row moves to deletedborrowers; old_issues rows lose their
        borrowernumber by the foreign key's ON DELETE SET NULL (their timestamp stays)."""
        with self.engine.begin() as conn:
            row = conn.execute(select(borrowers).where(
                borrowers.c.borrowernumber == borrowernumber)).one()
            conn.execute(insert(deletedborrowers).values(**row._mapping))
            conn.execute(borrowers.delete().where(borrowers.c.borrowernumber == borrowernumber))

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
            issues = self.t["issues"]
            # a reader's loan here; the hub's stand-in loan (the book lent at another member)
            # is `lent_to`'s, as Evergreen's item_view leaves its stand-in circulation out
            open_loan = conn.execute(select(issues.c.issue_id).select_from(
                issues.join(borrowers, borrowers.c.borrowernumber == issues.c.borrowernumber))
                .where(issues.c.itemnumber == item.itemnumber,
                       borrowers.c.cardnumber != STAND_IN)).first()
            return {"holding": item.holdingbranch, "onloan": item.onloan,
                    "open_loan": open_loan.issue_id if open_loan else None}

    def lent_to(self, barcode: str) -> str | None:
        """The card of the patron the book is issued to here, if it is (the stand-in's card
        while the owner's book is lent at another member)."""
        with self.engine.connect() as conn:
            return conn.execute(select(borrowers.c.cardnumber).select_from(
                self.t["issues"].join(items, items.c.itemnumber == self.t["issues"].c.itemnumber)
                .join(borrowers, borrowers.c.borrowernumber == self.t["issues"].c.borrowernumber))
                .where(items.c.barcode == barcode)).scalar()

    def loan_view(self, issue_id: int) -> dict:
        with self.engine.connect() as conn:
            open_row = conn.execute(select(self.t["issues"]).where(
                self.t["issues"].c.issue_id == issue_id)).first()
            closed = conn.execute(select(self.t["old_issues"]).where(
                self.t["old_issues"].c.issue_id == issue_id)).all()
            old = closed[0] if closed else None
            return {"open": open_row is not None,
                    "returned_at": old.returndate if old is not None else None,
                    # Koha without bug 33641 keeps no return branch on the loan
                    "return_branch": getattr(old, "checkin_library", None)
                    if self.checkin_library else None,
                    "records": len(closed) + (open_row is not None)}


class Koha2311Desk(KohaDesk):
    """A Koha without bug 33641 (e.g. 23.11): no checkin_library; returns only in statistics."""

    kind = "koha_2311"
    checkin_library = False
