"""Koha's own tables, as a member's Koha has them: the subset circhub reads or writes, with
Koha's column names, types, defaults, NOT NULLs, keys and foreign keys (with their ON DELETE /
ON UPDATE actions), written by us from Koha's `installer/data/mysql/kohastructure.sql`
(Koha-Community/Koha, read at commit 00545f8, a 23.11-era tree).

Facts taken from that file, table by table:
- `branches`: branchcode varchar(10) PK, branchname NOT NULL, pickup_location, public.
- `categories`: categorycode varchar(10) PK; category_type varchar(1) NOT NULL DEFAULT 'A'
  (A adult, C child, P professional, I organisation, S staff, X statistical).
- `borrowers`: cardnumber and userid UNIQUE; branchcode and categorycode NOT NULL, FKs to
  branches and categories (no ON DELETE action: a branch or category in use cannot go);
  dateexpiry, flags (staff permissions), lastseen, anonymized; `updated_on` TIMESTAMP
  ON UPDATE CURRENT_TIMESTAMP. `deletedborrowers`: the same columns, no keys (Koha moves a
  deleted patron there).
- `biblio` / `biblioitems`: items.biblionumber and items.biblioitemnumber are FKs to them
  (ON DELETE CASCADE), so every item hangs off a catalogue record.
- `items`: barcode varchar(20) UNIQUE; homebranch and holdingbranch FKs to branches
  (ON UPDATE CASCADE only: a branch code Koha does not have cannot be written there);
  notforloan, damaged, itemlost, withdrawn NOT NULL DEFAULT 0; onloan a DATE (the due date);
  datelastborrowed DATE, datelastseen DATETIME; `timestamp` ON UPDATE CURRENT_TIMESTAMP;
  itemnotes LONGTEXT ('public notes on this item (MARC21 952$z)') and itemnotes_nonpublic
  LONGTEXT ('non-public notes on this item (MARC21 952$x)'), both NULL by default.
  `deleteditems`: the same columns, no FKs (Koha moves a deleted item there).
- `issues`: issue_id PK; borrowernumber and itemnumber NOT NULL, FKs ON UPDATE CASCADE with no
  ON DELETE action (a patron or item on loan cannot be deleted); itemnumber UNIQUE (one open
  loan per item); branchcode has an index but no FK; renewals_count, unseen_renewals,
  onsite_checkout NOT NULL DEFAULT 0; auto_renew DEFAULT 0; `timestamp` ON UPDATE.
- `old_issues`: the same columns, issue_id kept from issues (no AUTO_INCREMENT), no UNIQUE on
  itemnumber; borrowernumber and itemnumber NULL-able FKs ON DELETE SET NULL ON UPDATE SET NULL.
  A foreign-key action does not fire ON UPDATE CURRENT_TIMESTAMP, so a patron deletion NULLs
  old_issues.borrowernumber without moving the row's `timestamp`.
- `branchtransfers`: frombranch and tobranch NOT NULL FKs to branches (ON DELETE CASCADE),
  itemnumber FK to items (ON DELETE CASCADE); daterequested TIMESTAMP DEFAULT now; datesent,
  datearrived, datecancelled; `reason` and `cancellation_reason` enums (ReturnToHome, ...).
- `statistics`: no key; datetime, branch, type ('issue', 'return', 'renew', 'localuse', ...),
  itemnumber, borrowernumber, itemtype, location, ccode, categorycode, interface; no FKs.
- `systempreferences`: variable varchar(50) PK, value (AnonymousPatron holds a borrowernumber).

Two generations. `issues.checkin_library` / `old_issues.checkin_library` (varchar(10) NULL,
"library the item was checked in at") come with the database update of Koha bug 33641 (recent
releases); older Kohas, still widely run (e.g. 23.11, the tree read above), lack them and keep
the return branch only in `statistics`. `koha_tables(checkin_library=...)` builds either.

MariaDB gets the real `ON UPDATE CURRENT_TIMESTAMP`; SQLite (the demo) an AFTER UPDATE trigger
that does the same when a statement changes another column and leaves this one alone.
"""

from __future__ import annotations

from sqlalchemy import (
    DDL,
    Column,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
    func,
)
from sqlalchemy.dialects import mysql

TRANSFER_REASONS = ("Manual", "StockrotationAdvance", "StockrotationRepatriation", "ReturnToHome",
                    "ReturnToHolding", "RotatingCollection", "Reserve", "LostReserve",
                    "CancelReserve", "TransferCancellation", "Recall", "RecallCancellation")
CANCELLATION_REASONS = ("Manual", "StockrotationAdvance", "StockrotationRepatriation",
                        "ReturnToHome", "ReturnToHolding", "RotatingCollection", "Reserve",
                        "LostReserve", "CancelReserve", "ItemLost", "WrongTransfer",
                        "RecallCancellation")
TIMESTAMP = DateTime().with_variant(mysql.TIMESTAMP(), "mysql", "mariadb")


def _stamp(name: str, key: str) -> Column:
    """A Koha change column: TIMESTAMP NOT NULL DEFAULT now ON UPDATE now."""
    return Column(name, TIMESTAMP, nullable=False, server_default=func.current_timestamp(),
                  index=True, info={"on_update": key})


def _on_update_now(tbl: Table) -> None:
    """Koha's ON UPDATE CURRENT_TIMESTAMP, per dialect, after the table is created."""
    for col in tbl.columns:
        if "on_update" not in col.info:
            continue
        key = col.info["on_update"]
        event.listen(tbl, "after_create", DDL(
            f"ALTER TABLE {tbl.name} MODIFY `{col.name}` TIMESTAMP NOT NULL "
            f"DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP"
        ).execute_if(dialect=("mysql", "mariadb")))
        # MariaDB moves the column only when another column's value changed: an UPDATE that
        # changes nothing leaves it alone.
        changed = " OR ".join(f'NEW."{c.name}" IS NOT OLD."{c.name}"'
                              for c in tbl.columns if c is not col)
        event.listen(tbl, "after_create", DDL(
            f'CREATE TRIGGER {tbl.name}_{col.name}_on_update AFTER UPDATE ON {tbl.name} '
            f'FOR EACH ROW WHEN NEW."{col.name}" IS OLD."{col.name}" AND ({changed}) BEGIN '
            f'UPDATE {tbl.name} SET "{col.name}" = CURRENT_TIMESTAMP '
            f'WHERE {key} = NEW.{key}; END'
        ).execute_if(dialect="sqlite"))


def _branch(name: str, nullable: bool = True, on_delete: str | None = None) -> Column:
    return Column(name, String(10), ForeignKey("branches.branchcode", ondelete=on_delete,
                                               onupdate="CASCADE"), nullable=nullable)


def _item_columns(with_fks: bool) -> list[Column]:
    def branch(name):
        return _branch(name) if with_fks else Column(name, String(10))

    def ref(name, target):
        fk = [ForeignKey(target, ondelete="CASCADE", onupdate="CASCADE")] if with_fks else []
        return Column(name, Integer, *fk, nullable=False, server_default="0")

    return [
        Column("itemnumber", Integer, primary_key=True, autoincrement=with_fks),
        ref("biblionumber", "biblio.biblionumber"),
        ref("biblioitemnumber", "biblioitems.biblioitemnumber"),
        Column("barcode", String(20), unique=True),
        Column("dateaccessioned", Date),
        branch("homebranch"),
        Column("datelastborrowed", Date),
        Column("datelastseen", DateTime),
        Column("notforloan", Integer, nullable=False, server_default="0"),
        Column("damaged", Integer, nullable=False, server_default="0"),
        Column("itemlost", Integer, nullable=False, server_default="0"),
        Column("withdrawn", Integer, nullable=False, server_default="0"),
        Column("itemcallnumber", String(255)),
        Column("issues", Integer, server_default="0"),
        Column("renewals", Integer),
        branch("holdingbranch"),
        _stamp("timestamp", "itemnumber"),
        Column("deleted_on", DateTime),
        Column("location", String(80)),
        Column("onloan", Date),
        Column("ccode", String(80)),
        Column("itype", String(10)),
        Column("itemnotes", Text),
        Column("itemnotes_nonpublic", Text),
    ]


def _borrower_columns(with_fks: bool) -> list[Column]:
    def ref(name, target):
        fk = [ForeignKey(target)] if with_fks else []
        return Column(name, String(10), *fk, nullable=False, server_default="")

    return [
        Column("borrowernumber", Integer, primary_key=True, autoincrement=with_fks),
        Column("cardnumber", String(32), unique=with_fks),
        Column("surname", Text),
        Column("firstname", Text),
        Column("dateofbirth", Date),
        ref("branchcode", "branches.branchcode"),
        ref("categorycode", "categories.categorycode"),
        Column("dateenrolled", Date),
        Column("dateexpiry", Date),
        Column("debarred", Date),
        Column("sex", String(1)),
        Column("flags", Integer),
        Column("userid", String(75), unique=with_fks),
        _stamp("updated_on", "borrowernumber"),
        Column("lastseen", DateTime),
        Column("anonymized", Integer, nullable=False, server_default="0"),
    ]


def _loan_columns(current: bool, checkin_library: bool) -> list[Column]:
    # issues: FKs with no ON DELETE (restrict); old_issues: ON DELETE / UPDATE SET NULL.
    action = {"onupdate": "CASCADE"} if current else {"ondelete": "SET NULL",
                                                       "onupdate": "SET NULL"}
    cols = [
        Column("issue_id", Integer, primary_key=True, autoincrement=current),
        Column("borrowernumber", Integer, ForeignKey("borrowers.borrowernumber", **action),
               nullable=not current),
        Column("issuer_id", Integer, ForeignKey("borrowers.borrowernumber",
                                                ondelete="SET NULL", onupdate="CASCADE")),
        Column("itemnumber", Integer, ForeignKey("items.itemnumber", **action),
               nullable=not current, unique=current),
        Column("date_due", DateTime),
        Column("branchcode", String(10), index=True),  # indexed, not a foreign key
        Column("returndate", DateTime),
    ]
    if checkin_library:  # Koha bug 33641
        cols.append(Column("checkin_library", String(10)))
    return cols + [
        Column("lastreneweddate", DateTime),
        Column("renewals_count", Integer, nullable=False, server_default="0"),
        Column("unseen_renewals", Integer, nullable=False, server_default="0"),
        Column("auto_renew", Integer, server_default="0"),
        _stamp("timestamp", "issue_id"),
        Column("issuedate", DateTime),
        Column("onsite_checkout", Integer, nullable=False, server_default="0"),
        Column("note", Text),
    ]


def koha_tables(checkin_library: bool) -> MetaData:
    """Koha's tables; `checkin_library`: the generation with Koha bug 33641's columns."""
    md = MetaData()
    Table("branches", md,
          Column("branchcode", String(10), primary_key=True, server_default=""),
          Column("branchname", Text, nullable=False),
          Column("pickup_location", Integer, nullable=False, server_default="1"),
          Column("public", Integer, nullable=False, server_default="1"))
    Table("categories", md,
          Column("categorycode", String(10), primary_key=True, server_default=""),
          Column("description", Text),
          Column("category_type", String(1), nullable=False, server_default="A"))
    Table("borrowers", md, *_borrower_columns(with_fks=True))
    Table("deletedborrowers", md, *_borrower_columns(with_fks=False))
    Table("biblio", md,
          Column("biblionumber", Integer, primary_key=True, autoincrement=True),
          Column("title", Text),
          Column("author", Text),
          _stamp("timestamp", "biblionumber"),
          Column("datecreated", Date, nullable=False))
    Table("biblioitems", md,
          Column("biblioitemnumber", Integer, primary_key=True, autoincrement=True),
          Column("biblionumber", Integer, ForeignKey("biblio.biblionumber", ondelete="CASCADE",
                                                     onupdate="CASCADE"),
                 nullable=False, server_default="0"),
          Column("isbn", Text),
          Column("itemtype", String(10)),
          _stamp("timestamp", "biblioitemnumber"))
    Table("items", md, *_item_columns(with_fks=True))
    Table("deleteditems", md, *_item_columns(with_fks=False))
    # AUTOINCREMENT: SQLite would otherwise reuse the id of a loan just moved to old_issues.
    Table("issues", md, *_loan_columns(True, checkin_library),
          sqlite_autoincrement=True)
    Table("old_issues", md, *_loan_columns(False, checkin_library))
    Table("branchtransfers", md,
          Column("branchtransfer_id", Integer, primary_key=True, autoincrement=True),
          Column("itemnumber", Integer, ForeignKey("items.itemnumber", ondelete="CASCADE",
                                                   onupdate="CASCADE"),
                 nullable=False, server_default="0"),
          Column("daterequested", TIMESTAMP, nullable=False,
                 server_default=func.current_timestamp()),
          Column("datesent", DateTime),
          _branch("frombranch", nullable=False, on_delete="CASCADE"),
          Column("datearrived", DateTime),
          Column("datecancelled", DateTime),
          _branch("tobranch", nullable=False, on_delete="CASCADE"),
          Column("comments", Text),
          Column("reason", Enum(*TRANSFER_REASONS, name="branchtransfers_reason",
                               create_constraint=False)),
          Column("cancellation_reason", Enum(*CANCELLATION_REASONS,
                                             name="branchtransfers_cancellation_reason",
                                             create_constraint=False)))
    Table("statistics", md,
          Column("datetime", DateTime, index=True),
          Column("branch", String(10)),
          Column("value", Float),
          Column("type", String(16)),
          Column("other", Text),
          Column("itemnumber", Integer, index=True),
          Column("itemtype", String(10)),
          Column("location", String(80)),
          Column("borrowernumber", Integer),
          Column("ccode", String(80)),
          Column("categorycode", String(10)),
          Column("interface", String(30)))
    Table("systempreferences", md,
          Column("variable", String(50), primary_key=True, server_default=""),
          Column("value", Text),
          Column("options", Text),
          Column("explanation", Text),
          Column("type", String(20)))
    for tbl in md.tables.values():
        _on_update_now(tbl)
    return md


CURRENT = koha_tables(checkin_library=True)  # Koha with bug 33641 (checkin_library)
BEFORE_33641 = koha_tables(checkin_library=False)  # e.g. Koha 23.11
