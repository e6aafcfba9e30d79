"""A simulated consortium: member ILS databases, readers, books and a few weeks of circulation.

Deterministic for a seed. The world model knows where every book physically is; each member's
ILS only learns what happens at its own desk, exactly as in the real one-card network, and the
hub has to work out the rest.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine

from circhub.domain.identity import check_character
from circhub.simulator.evergreen import EvergreenDesk
from circhub.simulator.koha import Koha2311Desk, KohaDesk
from circhub.simulator.openbiblio import OpenBiblioDesk
from circhub.simulator.polaris import PolarisDesk

# (code, name, region, level) — modelled on the Sichuan–Chongqing reading one-card.
LIBRARIES = [
    ("SC001", "Sichuan Provincial Library", "Chengdu", "province"),
    ("CQ001", "Chongqing Library", "Chongqing", "province"),
    ("CD001", "Chengdu Public Library", "Chengdu", "city"),
    ("CD002", "Pidu District Library", "Chengdu", "county"),
    ("CD003", "Dujiangyan City Library", "Chengdu", "county"),
    ("MY001", "Mianyang City Library", "Mianyang", "city"),
    ("DY001", "Deyang City Library", "Deyang", "city"),
    ("LS001", "Leshan City Library", "Leshan", "city"),
    ("CQ002", "Wanzhou District Library", "Chongqing", "county"),
    ("CQ003", "Fuling District Library", "Chongqing", "county"),
    ("CQ004", "Yongchuan District Library", "Chongqing", "county"),
    ("CQ005", "Hechuan District Library", "Chongqing", "county"),
]
AREA_CODES = {"Chengdu": ["510104", "510105", "510107", "510116"], "Mianyang": ["510703"],
              "Deyang": ["510603"], "Leshan": ["511102"],
              "Chongqing": ["500101", "500102", "500118", "500117"]}
LOAN_DAYS = 28
# The desk that plays each ILS profile, so one world can mix kinds (see mixed_world).
DESKS = {"koha": KohaDesk, "koha_2311": Koha2311Desk, "evergreen": EvergreenDesk,
         "polaris": PolarisDesk, "openbiblio": OpenBiblioDesk}
SURNAMES = ["Li", "Wang", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou"]


def member_specs(n: int) -> list[tuple[str, str, str, str]]:
    specs = list(LIBRARIES[:n])
    for i in range(len(specs), n):  # beyond the named dozen: more county libraries
        region = "Chengdu" if i % 2 else "Chongqing"
        prefix = "CD" if region == "Chengdu" else "CQ"
        specs.append((f"{prefix}{i + 100:03d}", f"{region} County Library {i}", region, "county"))
    return specs


def make_id_number(rng: random.Random, region: str) -> tuple[str, date, str]:
    area = rng.choice(AREA_CODES.get(region, AREA_CODES["Chengdu"]))
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 60))
    seq = rng.randrange(1, 1000)
    body = f"{area}{born:%Y%m%d}{seq:03d}"
    return body + check_character(body), born, "M" if seq % 2 else "F"


@dataclass
class Book:
    barcode: str
    owner: str
    at: str  # where it physically is
    loan: tuple[str, int, int] | None = None  # (member, issue id, reader id at that member)


@dataclass
class Person:
    id_number: str
    born: date
    sex: str
    home: str
    accounts: dict[str, int] = field(default_factory=dict)  # member -> local reader id


@dataclass
class LoanTruth:
    """One loan as it really happened: who lent the book to whom, and where it came back."""

    member: str  # the lending member
    issue: int  # the loan's id in the lending member's ILS
    barcode: str
    id_number: str
    issued_at: datetime
    due_at: datetime
    renewals: int = 0
    returned_at: datetime | None = None
    return_member: str | None = None
    # The lender's own desk closed it later, as any ILS closes the open loan of a book checked
    # in: returned elsewhere, brought back before the hub's close reached the lender.
    desk_closed: tuple[datetime, str] | None = None


@dataclass
class Stats:
    loans: int = 0
    returns: int = 0
    cross_returns: int = 0
    secondary_loans: int = 0
    renewals: int = 0


class World:
    def __init__(self, desks: dict[str, KohaDesk], specs, seed: int, start: datetime):
        self.desks = desks
        self.specs = {s[0]: s for s in specs}
        self.rng = random.Random(seed)
        self.clock = start
        self.books: dict[str, Book] = {}
        self.people: list[Person] = []
        self.stats = Stats()
        self.journal: list[tuple[datetime, str, str, str]] = []  # (at, action, barcode, member)
        self.ledger: dict[tuple[str, int], LoanTruth] = {}  # every loan, by (member, issue)

    def member_constants(self) -> dict[str, dict]:
        """Each member's `constants` for the consortium config (see config_toml)."""
        return {code: getattr(desk, "member_constants", dict)()  # KohaDesk is no Desk
                for code, desk in self.desks.items()}

    # -- seeding -------------------------------------------------------------------------
    def seed(self, readers_per_member: int, items_per_member: int, bad_readers: int = 0) -> None:
        names = {code: s[1] for code, s in self.specs.items()}
        for desk in self.desks.values():
            desk.create_schema(names)
        for code, desk in self.desks.items():
            barcodes = [f"{code}{n:07d}" for n in range(1, items_per_member + 1)]
            desk.add_items(barcodes, self.clock)
            self.books.update({b: Book(b, code, code) for b in barcodes})
            people = [self._person(code) for _ in range(readers_per_member)]
            self._register(desk, code, people)
        for i in range(bad_readers):  # rows a real ILS holds: typos in the ID number
            code = list(self.desks)[i % len(self.desks)]
            person = self._person(code)
            last = person.id_number[-1]
            person.id_number = person.id_number[:-1] + ("0" if last != "0" else "1")
            self.desks[code].add_readers([self._reader_row(person)])

    def _person(self, home: str) -> Person:
        id_number, born, sex = make_id_number(self.rng, self.specs[home][2])
        return Person(id_number, born, sex, home)

    def _reader_row(self, p: Person) -> dict:
        return {"cardnumber": p.id_number, "surname": self.rng.choice(SURNAMES),
                "firstname": "Reader", "dateofbirth": p.born, "sex": p.sex,
                "dateenrolled": self.clock.date()}

    def _register(self, desk: KohaDesk, code: str, people: list[Person]) -> None:
        ids = desk.add_readers([self._reader_row(p) for p in people])
        for p, local in zip(people, ids, strict=True):
            p.accounts[code] = local
        self.people.extend(p for p in people if p.home == code)

    # -- desk actions --------------------------------------------------------------------
    def tick(self, minutes: int = 7) -> datetime:
        self.clock += timedelta(minutes=minutes, seconds=self.rng.randrange(60))
        return self.clock

    def account(self, person: Person, member: str) -> int:
        """One card everywhere: a first visit opens a local account with the same ID card."""
        if member not in person.accounts:
            self._register(self.desks[member], member, [person])
        return person.accounts[member]

    def checkout(self, barcode: str, member: str, person: Person) -> None:
        book = self.books[barcode]
        at = self.tick()
        if book.at != member:
            raise ValueError(f"{barcode} is at {book.at}, not at {member}")
        reader = self.account(person, member)
        due = at + timedelta(days=LOAN_DAYS)
        issue = self.desks[member].checkout(barcode, reader, at, due)
        book.loan = (member, issue, reader)
        self.ledger[(member, issue)] = LoanTruth(member, issue, barcode, person.id_number, at, due)
        self.stats.loans += 1
        self.stats.secondary_loans += member != book.owner
        self.journal.append((at, "lent", barcode, member))

    def checkin(self, barcode: str, member: str) -> None:
        book = self.books[barcode]
        at = self.tick()
        stale = self._returned_elsewhere(barcode, member)
        self.desks[member].checkin(barcode, at)
        for truth in stale:  # closed by this check-in (by the hub, it would bear the true return)
            if self.desks[member].loan_view(truth.issue)["returned_at"] == at:
                truth.desk_closed = (at, member)
        if book.loan:
            truth = self.ledger[book.loan[:2]]
            truth.returned_at, truth.return_member = at, member
        if book.loan and book.loan[0] != member:
            self.stats.cross_returns += 1
        self.stats.returns += book.loan is not None
        book.loan, book.at = None, member
        self.journal.append((at, "returned", barcode, member))

    def _returned_elsewhere(self, barcode: str, member: str) -> list[LoanTruth]:
        """Loans of this book that `member` made and that came back at another member, which
        its ILS may still show open (the hub's close not there yet)."""
        return [t for t in self.ledger.values()
                if t.barcode == barcode and t.member == member and t.returned_at is not None
                and t.return_member != member and t.desk_closed is None]

    def renew(self, barcode: str) -> None:
        book = self.books[barcode]
        at = self.tick()
        member = book.loan[0]
        due = at + timedelta(days=LOAN_DAYS)
        successor = self.desks[member].renew(barcode, at, due)
        truth = self.ledger[book.loan[:2]]
        if successor is None:
            truth.due_at, truth.renewals = due, truth.renewals + 1
        else:  # Evergreen: the loan closed (renewed) and its successor opened
            truth.returned_at, truth.return_member = at, member
            self.ledger[(member, successor)] = LoanTruth(member, successor, barcode,
                                                         truth.id_number, at, due)
            book.loan = (member, successor, book.loan[2])
        self.stats.renewals += 1
        self.journal.append((at, "renewed", barcode, member))

    # -- a day of circulation ------------------------------------------------------------
    def play(self, days: int, actions_per_day: int) -> None:
        codes = list(self.desks)
        for _ in range(days):
            self.clock = self.clock.replace(hour=9, minute=0) + timedelta(days=1)
            for _ in range(actions_per_day):
                self.act(codes)

    def act(self, codes: list[str] | None = None) -> None:
        """One random desk action at one of `codes` (default every member): half checkouts,
        four in ten check-ins, one in ten renewals."""
        codes = codes or list(self.desks)
        roll = self.rng.random()
        if roll < 0.5:
            self._random_checkout(codes)
        elif roll < 0.9:
            self._random_checkin(codes)
        else:
            self._random_renewal(codes)

    def _random_checkout(self, codes: list[str]) -> None:
        member = self.rng.choice(codes)
        shelf = [b for b in self.books.values() if b.at == member and b.loan is None]
        if not shelf:
            return
        # Books held away from home are lent again first: that is the point of the network.
        away = [b for b in shelf if b.owner != member]
        book = self.rng.choice(away) if away and self.rng.random() < 0.6 else self.rng.choice(shelf)
        locals_ = [p for p in self.people if p.home == member]
        person = (self.rng.choice(self.people) if self.rng.random() < 0.25 or not locals_
                  else self.rng.choice(locals_))
        self.checkout(book.barcode, member, person)

    def _random_checkin(self, codes: list[str]) -> None:
        out = [b for b in self.books.values() if b.loan]
        if not out:
            return
        book = self.rng.choice(out)
        at_lender = self.rng.random() < 0.6 and book.loan[0] in codes
        member = book.loan[0] if at_lender else self.rng.choice(codes)
        self.checkin(book.barcode, member)

    def _random_renewal(self, codes: list[str]) -> None:
        out = [b for b in self.books.values()
               if b.loan and b.loan[0] == b.owner and b.loan[0] in codes]
        if out:
            self.renew(self.rng.choice(out).barcode)


def koha_world(urls: dict[str, str], seed: int, start: datetime,
               kind: str = "koha") -> World:
    """Koha members at the given database URLs (SQLite files or MariaDB databases); `kind`
    the Koha generation (profile `koha`, or `koha_2311` without checkin_library)."""
    specs = member_specs(len(urls))
    codes = [s[0] for s in specs]
    by_code = dict(zip(codes, urls.values(), strict=True))
    desks = {code: DESKS[kind](create_engine(url), code) for code, url in by_code.items()}
    return World(desks, specs, seed, start)


def mixed_world(members: list[tuple[str, str]], seed: int, start: datetime) -> World:
    """Members of several ILS kinds, in member_specs order: (profile, database URL) each.
    Evergreen needs PostgreSQL; Polaris-style PostgreSQL, usually as postgresql+pyodbc://."""
    import circhub.connections.odbc  # noqa: F401 - registers postgresql+pyodbc://

    specs = member_specs(len(members))
    desks = {spec[0]: DESKS[profile](create_engine(url), spec[0])
             for spec, (profile, url) in zip(specs, members, strict=True)}
    return World(desks, specs, seed, start)


def sqlite_world(folder: Path, n_members: int, seed: int, start: datetime) -> tuple[World, dict]:
    """Members as SQLite files under `folder` (the demo's embedded default)."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = member_specs(n_members)
    urls = {s[0]: f"sqlite:///{(folder / f'{s[0]}.db').resolve()}" for s in specs}
    desks = {code: KohaDesk(create_engine(url), code) for code, url in urls.items()}
    return World(desks, specs, seed, start), urls


def config_toml(specs, urls: dict[str, str], central: str, name: str, demo: bool,
                profiles: dict[str, str] | None = None,
                constants: dict[str, dict] | None = None) -> str:
    """The consortium TOML; `profiles` names each member's ILS kind (default koha),
    `constants` a member's constants (World.member_constants gives its desks')."""
    lines = ["[consortium]", f'name = "{name}"', f'central_store = "{central}"',
             "max_source_connections = 8", f"demo = {str(demo).lower()}", ""]
    for code, title, region, level in specs:
        lines += ["[[members]]", f'code = "{code}"', f'name = "{title}"',
                  f'region = "{region}"', f'level = "{level}"',
                  f'profile = "{(profiles or {}).get(code, "koha")}"',
                  f'connection = "{urls[code]}"']
        given = (constants or {}).get(code)
        if given:
            lines.append("constants = { " + ", ".join(
                f"{k} = {json.dumps(v)}" for k, v in given.items()) + " }")
        lines.append("")
    return "\n".join(lines)
