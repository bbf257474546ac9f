"""Reading an import file: its format (from the header, or as told), and each line as a
checked `ImportRow`, or a `RowError` naming the line.

Formats (header names compare case-insensitively, ignoring spaces, `_` and `-`):

* `smile` (Smile.io's points import): `email,points`. Adds the points, or sets the balance to
  them with `Mode.RESET`.
* `loyaltylion` (LoyaltyLion's bulk file): customer id (the merchant's id: Laurel's
  `externalId`), email, points and enrolled date, under the names LoyaltyLion and merchants
  use (`customer_id`, `merchant_id`, `email_address`, `points_approved`, `enrolled_at`, ...),
  optionally name (or first and last name), birthday and tier. Adds, or sets with `RESET`.
* `laurel`: `email,name,externalId,birthday,joinedAt,points,lifetimePoints,tier`, any subset
  holding `email` or `externalId`, in any order. `points` is the balance to set; empty leaves
  the balance alone.
"""

from __future__ import annotations

import csv
import enum
import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import orjson

from services.errors import DomainError, Invalid
from services.ledger.entries import MAX_ENTRY_POINTS
from services.members import check_birthday, normalise_email
from services.program import MAX_POINTS, clean_text

MAX_NAME_LENGTH = 100
MAX_EXTERNAL_ID_LENGTH = 200
MAX_TIER_NAME_LENGTH = 100


class Format(enum.StrEnum):
    SMILE = "smile"
    LOYALTYLION = "loyaltylion"
    LAUREL = "laurel"


class Mode(enum.StrEnum):
    ADD = "add"  # add the file's points to the balance
    RESET = "reset"  # set the balance to the file's points


class ImportFileError(Invalid):
    """The file as a whole cannot be read (header, format, options): nothing is imported."""


@dataclass(frozen=True, slots=True)
class RowError(Exception):
    """A line that is skipped, and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One checked line. `points` None leaves the balance alone; `absolute` sets the balance to
    `points` instead of adding them."""

    line: int
    email: str | None
    external_id: str | None
    name: str | None
    birthday: date | None
    joined_at: datetime | None
    points: int | None
    absolute: bool
    lifetime_points: int | None
    tier: str | None
    key: str  # the row's idempotency key: file base name and normalised content
    fingerprint: str  # of the normalised content alone


def _normalised(header_name: str) -> str:
    return re.sub(r"[\s_\-]+", "", header_name.strip().lower())


_LAUREL = {
    "email": "email",
    "name": "name",
    "externalid": "external_id",
    "birthday": "birthday",
    "joinedat": "joined_at",
    "points": "points",
    "lifetimepoints": "lifetime_points",
    "tier": "tier",
}
_SMILE = {"email": "email", "points": "points"}
_LOYALTYLION_ID = {"customerid", "merchantid", "merchantcustomerid", "shopifycustomerid"}
_LOYALTYLION_ENROLLED = {
    "enrolledat",
    "enrolled",
    "enrolleddate",
    "enrolledon",
    "dateenrolled",
    "enrollmentdate",
    "enrolmentdate",
}
_LOYALTYLION = {
    **dict.fromkeys(_LOYALTYLION_ID, "external_id"),
    **dict.fromkeys(_LOYALTYLION_ENROLLED, "joined_at"),
    "email": "email",
    "emailaddress": "email",
    "customeremail": "email",
    "points": "points",
    "pointsapproved": "points",
    "pointsbalance": "points",
    "balance": "points",
    "name": "name",
    "fullname": "name",
    "firstname": "first_name",
    "lastname": "last_name",
    "birthday": "birthday",
    "birthdate": "birthday",
    "dateofbirth": "birthday",
    "tier": "tier",
    "tiername": "tier",
    "currenttier": "tier",
}
_COLUMNS = {Format.SMILE: _SMILE, Format.LOYALTYLION: _LOYALTYLION, Format.LAUREL: _LAUREL}
LAUREL_HEADER = "email,name,externalId,birthday,joinedAt,points,lifetimePoints,tier"


@dataclass(frozen=True, slots=True)
class Header:
    """The file's format and, for each field it carries, its column."""

    format: Format
    columns: dict[str, int]
    width: int

    @classmethod
    def read(cls, names: Sequence[str], given: Format | None) -> Header:
        normalised = [_normalised(name) for name in names]
        if not any(normalised):
            raise ImportFileError("the file has no header line")
        chosen = given or detect_format(normalised)
        known = _COLUMNS[chosen]
        columns: dict[str, int] = {}
        for index, name in enumerate(normalised):
            field_name = known.get(name)
            if field_name is None:
                if chosen is Format.LAUREL:
                    # Laurel's own header is documented: a misspelt column would be ignored.
                    raise ImportFileError(
                        f"unknown column {names[index].strip()!r} for the laurel format "
                        f"(its columns: {LAUREL_HEADER})"
                    )
                continue  # other platforms' exports carry columns Laurel has no use for
            if field_name in columns:
                raise ImportFileError(f"two columns give the {field_name} (column {index + 1})")
            columns[field_name] = index
        missing = _missing(chosen, columns)
        if missing:
            raise ImportFileError(f"the {chosen.value} format needs {missing} in its header")
        return cls(chosen, columns, len(names))


def detect_format(normalised: Sequence[str]) -> Format:
    """The format a header (normalised names) is written in."""
    names = set(normalised) - {""}
    if names & (_LOYALTYLION_ID | _LOYALTYLION_ENROLLED):
        return Format.LOYALTYLION
    laurel_only = {"externalid", "joinedat", "lifetimepoints", "name", "birthday", "tier"}
    if names & laurel_only and names <= set(_LAUREL):
        return Format.LAUREL
    if {"email", "points"} <= names:
        return Format.SMILE
    raise ImportFileError(
        "cannot tell the format from the header: give --format (smile: email,points; "
        "loyaltylion: customer_id,email,points,enrolled_at; "
        f"laurel: {LAUREL_HEADER})"
    )


def _missing(chosen: Format, columns: dict[str, int]) -> str | None:
    if chosen is Format.SMILE and not {"email", "points"} <= set(columns):
        return "email and points"
    if chosen is Format.LOYALTYLION:
        if "points" not in columns:
            return "a points column"
        if not {"email", "external_id"} & set(columns):
            return "an email or a customer id column"
    if chosen is Format.LAUREL and not {"email", "external_id"} & set(columns):
        return "email or externalId"
    return None


@dataclass(slots=True)
class Seen:
    """The first line of each email and externalId: a member appears once in a file."""

    emails: dict[str, int] = field(default_factory=dict)
    external_ids: dict[str, int] = field(default_factory=dict)

    def check(self, line: int, email: str | None, external_id: str | None) -> None:
        by_email = self.emails.setdefault(email, line) if email is not None else line
        by_external_id = (
            self.external_ids.setdefault(external_id, line) if external_id is not None else line
        )
        if by_email != line:
            raise RowError(line, f"duplicate: line {by_email} has the same email")
        if by_external_id != line:
            raise RowError(line, f"duplicate: line {by_external_id} has the same externalId")


@dataclass(slots=True)
class RowReader:
    """Checks the lines of one file, in order, for one import."""

    header: Header
    source: str  # the file's base name
    mode: Mode
    now: datetime
    seen: Seen = field(default_factory=Seen)
    file_key: str = ""

    def __post_init__(self) -> None:
        self.file_key = _digest(self.source)[:32]

    def row(self, line: int, values: Sequence[str]) -> ImportRow:
        if len(values) > self.header.width and any(v.strip() for v in values[self.header.width :]):
            raise RowError(line, f"{len(values)} values for {self.header.width} columns")
        raw = {
            name: values[index] if index < len(values) else ""
            for name, index in self.header.columns.items()
        }
        if not all(value.isascii() for value in raw.values()):
            try:
                "".join(raw.values()).encode()
            except UnicodeEncodeError:  # bytes the file's reader kept as surrogates
                raise RowError(line, "not valid UTF-8 text") from None
        try:
            return self._checked(line, raw)
        except DomainError as exc:
            column = exc.field[-1] if exc.field else None
            if column is None or exc.message.startswith(column):
                raise RowError(line, exc.message) from None
            raise RowError(line, f"{column}: {exc.message}") from None

    def _checked(self, line: int, raw: dict[str, str]) -> ImportRow:
        text = {name: value.strip() for name, value in raw.items()}
        email = normalise_email(text["email"]) if text.get("email") else None
        external_id = (
            clean_text(text["external_id"], ["externalId"], max_length=MAX_EXTERNAL_ID_LENGTH)
            if text.get("external_id")
            else None
        )
        if email is None and external_id is None:
            raise Invalid("an email or an externalId is needed", field=["email"])
        # Before the other values: a duplicate is one whatever else is wrong with either line.
        self.seen.check(line, email, external_id)

        fmt = self.header.format
        given_name = text.get("name") or " ".join(
            part for part in (text.get("first_name"), text.get("last_name")) if part
        )
        name = clean_text(given_name, ["name"], max_length=MAX_NAME_LENGTH) if given_name else None
        points = _points(text.get("points", ""), "points", MAX_ENTRY_POINTS)
        if points is None and fmt is not Format.LAUREL:
            raise Invalid("must be given", field=["points"])
        absolute = fmt is Format.LAUREL or self.mode is Mode.RESET
        birthday = _birthday(text.get("birthday", ""), self.now)
        joined_at = _moment(text.get("joined_at", ""), self.now)
        lifetime = _points(text.get("lifetime_points", ""), "lifetimePoints", MAX_POINTS)
        tier = text.get("tier") or None
        if tier is not None:
            tier = clean_text(tier, ["tier"], max_length=MAX_TIER_NAME_LENGTH)
        # What the row means, whatever its spelling (case, spaces, column order).
        content = [
            fmt.value,
            "set" if absolute else "add",
            email,
            external_id,
            name,
            birthday.isoformat() if birthday else None,
            joined_at.isoformat() if joined_at else None,
            points,
            lifetime,
            tier,
        ]
        fingerprint = _digest(content)
        return ImportRow(
            line=line,
            email=email,
            external_id=external_id,
            name=name,
            birthday=birthday,
            joined_at=joined_at,
            points=points,
            absolute=absolute,
            lifetime_points=lifetime,
            tier=tier,
            # The file's name and the row's content, not its line: a line inserted or deleted
            # above must not make the rows below new (in add mode, paid twice). Within a file
            # the content is unique (an email or externalId given twice is refused).
            key=f"{self.file_key}:{fingerprint}",
            fingerprint=fingerprint,
        )


def _digest(value: object) -> str:
    return hashlib.sha256(orjson.dumps(value)).hexdigest()  # compact, one spelling a value


_WHOLE = re.compile(r"^\+?(\d+)(?:\.0+)?$")


def _points(value: str, name: str, maximum: int) -> int | None:
    if not value:
        return None
    match = _WHOLE.match(value)
    if match is None:
        if re.match(r"^-\d", value):
            raise Invalid("must not be negative", field=[name])
        raise Invalid(f"must be a whole number, not {value[:20]!r}", field=[name])
    points = int(match.group(1))
    if points > maximum:
        raise Invalid(f"must be at most {maximum:,}", field=[name])
    return points


def _birthday(value: str, now: datetime) -> date | None:
    if not value:
        return None
    try:
        birthday = date.fromisoformat(value)
    except ValueError:
        raise Invalid("must be a date (YYYY-MM-DD)", field=["birthday"]) from None
    return check_birthday(birthday, now)  # as enrolment and edits check it


def _moment(value: str, now: datetime) -> datetime | None:
    """An ISO date (midnight UTC) or datetime (UTC unless it says otherwise), not in the future."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid("must be an ISO date or datetime", field=["joinedAt"]) from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment > now:
        raise Invalid("must not be in the future", field=["joinedAt"])
    return moment


def records(lines: Iterable[str]) -> Iterator[tuple[int, list[str] | str]]:
    """The CSV records of `lines` with the line each starts on (a quoted value may span
    lines), blank lines skipped; a line that is not CSV comes as the reason (a string)."""
    reader = csv.reader(lines)
    start = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield start, f"not a CSV line ({error})"
        else:
            if any(value.strip() for value in record):
                yield start, record
        start = reader.line_num + 1
