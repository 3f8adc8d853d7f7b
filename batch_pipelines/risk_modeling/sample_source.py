"""A small, deterministic stand-in for the insurer's exposure warehouse (Data Extraction's source).

In production Data Extraction reads SQL Server; the demo and the tests read a SQLite file
made here. It has the two tables an exposure warehouse exposes to catastrophe modeling,
one row per account (policy) and one per insured location, each stamped with the import
file (the program feed the Excel configuration names on its Portfolios sheet) and the
month of the snapshot (``as_of_month``, the configuration's Current Date Value such as
``202503``). The extraction queries in ``sql/data_extraction_*.sql`` select from these
tables and alias the columns to Moody's MRI import names; a production warehouse exposes a
view of the same shape.

Everything is derived from ``random.Random`` seeded with ``(seed, import file)``, so the
same call always gives byte-identical CSVs, and running it again replaces the import
files' rows for that month instead of adding to them.

Who gets which program: each account carries a program code (``program``, exported as
``USERDEF1``) that Portfolio Mapping uses to put accounts into sub-portfolios. With a
configuration, the programs of an import file are its sub-portfolios' segments
(:func:`sub_portfolio_segment`: the sub-portfolio name without the base portfolio's name),
dealt round-robin so every sub-portfolio gets accounts; otherwise :data:`STANDARD_PROGRAMS`.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from batch_pipelines.risk_modeling.models import MasterConfiguration
from batch_pipelines.store.urls import normalize_database_url

STANDARD_PROGRAMS: tuple[str, ...] = (
    "Clay_Homes",
    "Clay_21st",
    "CHFS",
    "Condo",
    "Renters",
    "Manufactured",
    "Lender_P",
    "Other",
)

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("as_of_month", sa.String(6), primary_key=True),
    sa.Column("import_file", sa.String(100), primary_key=True),
    sa.Column("account_number", sa.String(40), primary_key=True),
    sa.Column("account_name", sa.String(100), nullable=False),
    sa.Column("policy_number", sa.String(40), nullable=False),
    sa.Column("program", sa.String(40), nullable=False),
    sa.Column("line_of_business", sa.String(40), nullable=False),
    sa.Column("peril", sa.String(2), nullable=False),  # EQ WS TO FL FR
    sa.Column("policy_type", sa.Integer, nullable=False),  # MRI POLICYTYPE code of the peril
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("inception_date", sa.String(10), nullable=False),
    sa.Column("expiration_date", sa.String(10), nullable=False),
    sa.Column("policy_limit", sa.BigInteger, nullable=False),
    sa.Column("policy_deductible", sa.BigInteger, nullable=False),
    sa.Column("participation", sa.BigInteger, nullable=False),
    sa.Column("premium", sa.BigInteger, nullable=False),
    sa.Column("underwriter", sa.String(60), nullable=False),
)

locations = sa.Table(
    "locations",
    metadata,
    sa.Column("as_of_month", sa.String(6), primary_key=True),
    sa.Column("import_file", sa.String(100), primary_key=True),
    sa.Column("account_number", sa.String(40), primary_key=True),
    sa.Column("location_number", sa.String(40), primary_key=True),
    sa.Column("location_name", sa.String(100), nullable=False),
    sa.Column("street", sa.String(100), nullable=False),
    sa.Column("city", sa.String(60), nullable=False),
    sa.Column("state_code", sa.String(2), nullable=True),  # empty outside the US
    sa.Column("postal_code", sa.String(10), nullable=False),
    sa.Column("country_code", sa.String(2), nullable=False),  # ISO 3166 alpha-2
    sa.Column("latitude", sa.Float, nullable=False),
    sa.Column("longitude", sa.Float, nullable=False),
    sa.Column("construction_scheme", sa.String(10), nullable=False),
    sa.Column("construction_class", sa.String(10), nullable=False),
    sa.Column("construction", sa.String(40), nullable=False),
    sa.Column("occupancy_scheme", sa.String(10), nullable=False),
    sa.Column("occupancy_type", sa.String(10), nullable=False),
    sa.Column("occupancy", sa.String(40), nullable=False),
    sa.Column("year_built", sa.Integer, nullable=False),
    sa.Column("stories", sa.Integer, nullable=False),
    sa.Column("buildings", sa.Integer, nullable=False),
    sa.Column("peril", sa.String(2), nullable=False),
    sa.Column("building_value", sa.BigInteger, nullable=False),
    sa.Column("other_structures_value", sa.BigInteger, nullable=False),
    sa.Column("contents_value", sa.BigInteger, nullable=False),
    sa.Column("time_element_value", sa.BigInteger, nullable=False),
    sa.Column("total_insured_value", sa.BigInteger, nullable=False),
    sa.Column("site_deductible", sa.BigInteger, nullable=False),
    sa.Column("site_limit", sa.BigInteger, nullable=False),
)


@dataclass(frozen=True)
class SampleSource:
    """What :func:`create_sample_source` wrote."""

    url: str
    date_value: str
    import_files: tuple[str, ...]
    accounts: int
    locations: int


# --------------------------------------------------------------------------- public helpers


def sub_portfolio_segment(base_portfolio: str, sub_portfolio: str) -> str:
    """The program a sub-portfolio holds: its name without the ``{base}_`` prefix.

    ``sub_portfolio_segment("USEQ", "USEQ_Clay_Homes") == "Clay_Homes"``; a name that does
    not start with the base's name is its own segment.
    """
    prefix = f"{base_portfolio}_"
    if sub_portfolio.startswith(prefix) and len(sub_portfolio) > len(prefix):
        return sub_portfolio[len(prefix) :]
    return sub_portfolio


_PERIL_CODES = {
    "EQ": "EQ",
    "FF": "EQ",
    "HU": "WS",
    "WS": "WS",
    "FL": "FL",
    "WF": "FR",
    "FR": "FR",
    "ST": "TO",
    "TO": "TO",
}
POLICY_TYPES = {"EQ": 1, "WS": 2, "TO": 3, "FL": 4, "FR": 5}


def peril_of(import_file: str) -> str:
    """The MRI peril an import file is modeled for, from its code (``USHU`` -> ``WS``).

    Fire following (``FF``) is an earthquake sub-peril; ``ST`` is severe convective storm
    (``TO``); ``WF`` wildfire (``FR``). Unrecognised codes are windstorm.
    """
    code = import_file.upper()
    if len(code) >= 4 and code[2:4] in _PERIL_CODES:
        return _PERIL_CODES[code[2:4]]
    for token, peril in _PERIL_CODES.items():
        if token in code:
            return peril
    return "WS"


# --------------------------------------------------------------------------- geography

# (state, city, postal code, latitude, longitude); Caribbean entries have no state.
_US = {
    "CA": [
        ("Los Angeles", "90012", 34.0537, -118.2428),
        ("San Francisco", "94103", 37.7725, -122.4091),
        ("Sacramento", "95814", 38.5816, -121.4944),
        ("San Diego", "92101", 32.7157, -117.1611),
    ],
    "WA": [("Seattle", "98101", 47.6101, -122.3344)],
    "OR": [("Portland", "97201", 45.5152, -122.6784)],
    "UT": [("Salt Lake City", "84101", 40.7608, -111.8910)],
    "NV": [("Reno", "89501", 39.5296, -119.8138)],
    "AK": [("Anchorage", "99501", 61.2181, -149.9003)],
    "SC": [("Charleston", "29401", 32.7765, -79.9311)],
    "TN": [("Memphis", "38103", 35.1495, -90.0490)],
    "MO": [("St. Louis", "63101", 38.6270, -90.1994)],
    "FL": [
        ("Miami", "33130", 25.7617, -80.1918),
        ("Tampa", "33602", 27.9506, -82.4572),
        ("Jacksonville", "32202", 30.3322, -81.6557),
    ],
    "TX": [
        ("Houston", "77002", 29.7604, -95.3698),
        ("Dallas", "75201", 32.7767, -96.7970),
        ("Corpus Christi", "78401", 27.8006, -97.3964),
    ],
    "LA": [("New Orleans", "70112", 29.9511, -90.0715)],
    "NC": [("Wilmington", "28401", 34.2257, -77.9447)],
    "GA": [("Savannah", "31401", 32.0809, -81.0912)],
    "AL": [("Mobile", "36602", 30.6954, -88.0399)],
    "MS": [("Gulfport", "39501", 30.3674, -89.0928)],
    "NY": [("New York", "10001", 40.7506, -73.9972)],
    "MA": [("Boston", "02108", 42.3588, -71.0638)],
    "NJ": [("Atlantic City", "08401", 39.3643, -74.4229)],
    "CO": [("Denver", "80202", 39.7527, -104.9992)],
    "AZ": [("Phoenix", "85003", 33.4510, -112.0740)],
    "NM": [("Santa Fe", "87501", 35.6870, -105.9378)],
    "MT": [("Missoula", "59802", 46.8721, -113.9940)],
    "ID": [("Boise", "83702", 43.6150, -116.2023)],
    "OK": [("Oklahoma City", "73102", 35.4676, -97.5164)],
    "KS": [("Wichita", "67202", 37.6872, -97.3301)],
    "NE": [("Omaha", "68102", 41.2565, -95.9345)],
    "IA": [("Des Moines", "50309", 41.5868, -93.6250)],
    "IL": [("Chicago", "60601", 41.8853, -87.6229)],
}
_STATES_BY_PERIL = {
    "EQ": ("CA", "WA", "OR", "UT", "NV", "AK", "SC", "TN", "MO"),
    "WS": ("FL", "TX", "LA", "NC", "SC", "GA", "AL", "MS", "NY", "MA"),
    "FL": ("FL", "LA", "TX", "NC", "SC", "NJ", "NY"),
    "FR": ("CA", "OR", "WA", "CO", "AZ", "NM", "MT", "ID"),
    "TO": ("TX", "OK", "KS", "NE", "MO", "IA", "IL", "CO"),
}
# (country, city, postal code, latitude, longitude)
_CARIBBEAN = (
    ("PR", "San Juan", "00901", 18.4655, -66.1057),
    ("VI", "Charlotte Amalie", "00802", 18.3419, -64.9307),
    ("BS", "Nassau", "N-4800", 25.0443, -77.3504),
    ("KY", "George Town", "KY1-1001", 19.2869, -81.3674),
    ("JM", "Kingston", "JMAKN01", 17.9712, -76.7936),
    ("BB", "Bridgetown", "BB11000", 13.0969, -59.6145),
    ("TT", "Port of Spain", "TT-POS", 10.6596, -61.5086),
)
_STREETS = (
    "Main",
    "Oak",
    "Pine",
    "Maple",
    "Cedar",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Sunset",
    "River",
    "Highland",
    "Magnolia",
    "Bayshore",
    "Harbor",
)
_STREET_KINDS = ("St", "Ave", "Blvd", "Dr", "Ln", "Rd", "Ct", "Way")
_FIRST = (
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Maria",
    "Carlos",
    "Aisha",
    "Wei",
    "Priya",
    "Kofi",
)
_LAST = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Nguyen",
    "Patel",
    "O'Neil",
)
_BUSINESS = ("Holdings LLC", "Properties Inc", "Hospitality Group", "Retail Partners", "Storage Co")
_UNDERWRITERS = ("K. Alvarez", "M. Chen", "R. Okafor", "S. Lindqvist", "T. Brennan")

# RMS construction classes a single-family home is drawn from.
_RMS_CLASSES = (("1", "Wood Frame"), ("2", "Masonry"), ("3", "Reinforced Concrete"), ("4", "Steel"))


def _profile(program: str, import_file: str) -> tuple[str, str, str, str, tuple[int, int]]:
    """(construction class, construction, ATC occupancy, occupancy, building value range)."""
    text = f"{program} {import_file}".lower()
    if "manufact" in text or "clay" in text:
        return "5", "Mobile Home", "1", "Permanent Dwelling (Single Family)", (40_000, 160_000)
    if "condo" in text:
        return (
            "3",
            "Reinforced Concrete",
            "2",
            "Permanent Dwelling (Multi-Family)",
            (80_000, 400_000),
        )
    if "renter" in text:
        return "2", "Masonry", "2", "Permanent Dwelling (Multi-Family)", (0, 0)
    if "commercial" in text:
        return "4", "Steel", "5", "Retail Trade", (1_000_000, 8_000_000)
    return "1", "Wood Frame", "1", "Permanent Dwelling (Single Family)", (150_000, 900_000)


# --------------------------------------------------------------------------- generation


def _programs_by_import_file(
    source: MasterConfiguration | Mapping[str, Sequence[str]] | Iterable[str],
) -> dict[str, tuple[str, ...]]:
    if isinstance(source, MasterConfiguration):
        out: dict[str, tuple[str, ...]] = {}
        for base in source.base_portfolios:
            segments = tuple(
                sub_portfolio_segment(base.name, p.name)
                for p in source.portfolios
                if not p.is_base
                and p.database == base.database
                and p.import_file == base.import_file
            )
            out.setdefault(base.import_file, ())
            out[base.import_file] += segments
        return {k: v or STANDARD_PROGRAMS for k, v in out.items()}
    if isinstance(source, Mapping):
        return {str(k): tuple(v) or STANDARD_PROGRAMS for k, v in source.items()}
    if isinstance(source, str):
        raise TypeError("give an iterable of import file names, not one string")
    return {str(name): STANDARD_PROGRAMS for name in dict.fromkeys(source)}


def _round(value: float, step: int = 1000) -> int:
    return int(round(value / step) * step)


def _rows_for(
    import_file: str,
    programs: Sequence[str],
    date_value: str,
    *,
    accounts_per_file: int,
    locations_per_account: int,
    seed: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(f"{seed}|{import_file}")
    peril = peril_of(import_file)
    caribbean = import_file.upper().startswith("CB")
    states = _STATES_BY_PERIL[peril]
    code = (
        re.sub(r"[^A-Z0-9]", "", import_file.upper())[:12]
        or f"F{zlib.crc32(import_file.encode()):08X}"
    )
    year = int(date_value[:4]) if date_value[:4].isdigit() else 2025
    commercial = "commercial" in import_file.lower()
    account_rows: list[dict[str, Any]] = []
    location_rows: list[dict[str, Any]] = []
    for index in range(1, accounts_per_file + 1):
        program = programs[(index - 1) % len(programs)]
        number = f"{code}{index:06d}"
        if commercial:
            name = f"{rng.choice(_LAST)} {rng.choice(_BUSINESS)}"
        else:
            name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        bldg_class, construction, occ_type, occupancy, (low, high) = _profile(program, import_file)
        month = rng.randint(1, 12)
        day = rng.randint(1, 28)
        total = 0
        for loc_index in range(1, locations_per_account + 1):
            if caribbean:
                country, city, postal, lat, lon = rng.choice(_CARIBBEAN)
                state = None
            else:
                state = rng.choice(states)
                city, postal, lat, lon = rng.choice(_US[state])
                country = "US"
            building = _round(rng.uniform(low, high)) if high else 0
            contents = (
                _round(building * rng.uniform(0.3, 0.7))
                if building
                else _round(rng.uniform(15_000, 80_000))
            )
            other = _round(building * 0.1)
            time_element = _round((building or contents) * 0.2)
            tiv = building + other + contents + time_element
            total += tiv
            deductible_rate = 0.10 if peril == "EQ" else 0.02
            stories = (
                rng.randint(3, 20) if occ_type == "2" and bldg_class == "3" else rng.randint(1, 3)
            )
            loc_class, loc_construction = (
                rng.choice(_RMS_CLASSES[:2]) if bldg_class == "1" else (bldg_class, construction)
            )
            location_rows.append(
                {
                    "as_of_month": date_value,
                    "import_file": import_file,
                    "account_number": number,
                    "location_number": f"{number}-{loc_index:03d}",
                    "location_name": f"{name} location {loc_index}",
                    "street": f"{rng.randint(1, 9999)} {rng.choice(_STREETS)} {rng.choice(_STREET_KINDS)}",
                    "city": city,
                    "state_code": state,
                    "postal_code": postal,
                    "country_code": country,
                    "latitude": round(lat + rng.uniform(-0.05, 0.05), 6),
                    "longitude": round(lon + rng.uniform(-0.05, 0.05), 6),
                    "construction_scheme": "RMS",
                    "construction_class": loc_class,
                    "construction": loc_construction,
                    "occupancy_scheme": "ATC",
                    "occupancy_type": occ_type,
                    "occupancy": occupancy,
                    "year_built": rng.randint(1950, min(year, 2024)),
                    "stories": stories,
                    "buildings": 1,
                    "peril": peril,
                    "building_value": building,
                    "other_structures_value": other,
                    "contents_value": contents,
                    "time_element_value": time_element,
                    "total_insured_value": tiv,
                    "site_deductible": _round(tiv * deductible_rate, 100),
                    "site_limit": tiv,
                }
            )
        account_rows.append(
            {
                "as_of_month": date_value,
                "import_file": import_file,
                "account_number": number,
                "account_name": name,
                "policy_number": f"{code[:4]}-{year}-{rng.randint(0, 9_999_999):07d}",
                "program": program,
                "line_of_business": "Commercial Property" if commercial else "Personal Property",
                "peril": peril,
                "policy_type": POLICY_TYPES[peril],
                "currency": "USD",
                "inception_date": f"{year - 1}-{month:02d}-{day:02d}",
                "expiration_date": f"{year}-{month:02d}-{day:02d}",
                "policy_limit": total,
                "policy_deductible": _round(total * (0.05 if peril == "EQ" else 0.01), 100),
                "participation": total,
                "premium": _round(total * rng.uniform(0.002, 0.012), 10),
                "underwriter": rng.choice(_UNDERWRITERS),
            }
        )
    return account_rows, location_rows


def _url(url_or_path: str | Path) -> sa.engine.URL:
    text = str(url_or_path)
    if "://" in text:
        return normalize_database_url(text)
    return sa.engine.make_url(f"sqlite:///{Path(text)}")


def create_sample_source(
    url_or_path: str | Path,
    configuration_or_import_files: MasterConfiguration
    | Mapping[str, Sequence[str]]
    | Iterable[str],
    *,
    date_value: str | None = None,
    accounts_per_file: int = 25,
    locations_per_account: int = 2,
    seed: int = 0,
) -> SampleSource:
    """Create (or refresh) a sample exposure warehouse for the import files of a cycle.

    ``configuration_or_import_files`` is a :class:`MasterConfiguration` (its base
    portfolios' import files, programs from their sub-portfolios, and its Current Date
    Value), a mapping ``{import file: [program, ...]}``, or plain import file names.
    ``date_value`` (``YYYYMM``) is required unless a configuration gives it. Rows of the
    same import files and month are replaced, so running it twice changes nothing.
    """
    if accounts_per_file < 1 or locations_per_account < 1:
        raise ValueError("accounts_per_file and locations_per_account must be at least 1")
    if date_value is None and isinstance(configuration_or_import_files, MasterConfiguration):
        date_value = configuration_or_import_files.metadata.current_date_value
    if not date_value:
        raise ValueError("date_value is required (the cycle's Current Date Value, e.g. '202503')")
    programs = _programs_by_import_file(configuration_or_import_files)
    url = _url(url_or_path)
    if url.drivername.startswith("sqlite") and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    n_accounts = n_locations = 0
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            for import_file, file_programs in programs.items():
                account_rows, location_rows = _rows_for(
                    import_file,
                    file_programs,
                    date_value,
                    accounts_per_file=accounts_per_file,
                    locations_per_account=locations_per_account,
                    seed=seed,
                )
                for table in (locations, accounts):
                    conn.execute(
                        table.delete().where(
                            table.c.as_of_month == date_value, table.c.import_file == import_file
                        )
                    )
                conn.execute(accounts.insert(), account_rows)
                conn.execute(locations.insert(), location_rows)
                n_accounts += len(account_rows)
                n_locations += len(location_rows)
    finally:
        engine.dispose()
    return SampleSource(
        url=url.render_as_string(hide_password=True),
        date_value=date_value,
        import_files=tuple(programs),
        accounts=n_accounts,
        locations=n_locations,
    )
