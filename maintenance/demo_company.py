"""The demo company: a small waste-collection business around Utrecht, generated.

`manage.py seed_demo` builds one `DemoCompany` and hands it to every installed app's
``demo.py`` (``seed(company)``), so billing's customers, routing's service points and
notifications' recipients describe the same households and businesses without the apps
importing each other. Everything is derived from a seeded random generator: the same
seed and day give the same company, so a re-seed finds its own rows again.

The addresses are real street names of Utrecht with made-up house numbers, postcodes in
the city's range and coordinates scattered around the centre; the people, e-mail
addresses (``example.org``, a reserved domain) and phone numbers are invented.
"""

from __future__ import annotations

import math
import random
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from decimal import Decimal

CENTRE = (52.0907, 5.1214)  # Utrecht, Domplein
# Customers lie within this distance of the centre (km): the city and its edges.
RADIUS_KM = 7.0

STREETS = (
    "Oudegracht", "Biltstraat", "Amsterdamsestraatweg", "Kanaalweg", "Vleutenseweg",
    "Adelaarstraat", "Nobelstraat", "Lange Nieuwstraat", "Twijnstraat", "Zadelstraat",
    "Burgemeester Reigerstraat", "Wittevrouwenstraat", "Croeselaan", "Kanaalstraat",
    "Weerdsingel", "Maliesingel", "Catharijnesingel", "Voorstraat", "Lucasbolwerk",
    "Jutfaseweg", "Laan van Nieuw-Guinea", "Marnixlaan", "Prins Hendriklaan",
    "Verlengde Hoogravenseweg", "Europalaan", "Winthontlaan", "Tiberdreef",
    "Zamenhofdreef", "Gageldijk", "Vondellaan", "Kardinaal de Jongweg", "Merelstraat",
    "Griftstraat", "Livingstonelaan", "Thorbeckelaan", "Händelstraat", "Roelantdreef",
    "Pijlsweerd", "Ondiep", "Zuilenselaan", "Kennedylaan", "Waterlinieweg",
)  # fmt: skip
FIRST_NAMES = (
    "Anna", "Bram", "Daan", "Emma", "Fleur", "Jan", "Julia", "Lars", "Lotte", "Maarten",
    "Noor", "Pieter", "Sanne", "Sem", "Sophie", "Thijs", "Tess", "Willem", "Yara", "Zoë",
    "Mohammed", "Fatima", "Ayşe", "Mehmet", "Priya", "Wei", "Olga", "Luca", "Sara", "Kees",
)  # fmt: skip
LAST_NAMES = (
    "de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Janssen",
    "Visser", "Smit", "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters",
    "Hendriks", "van Leeuwen", "Dekker", "Brouwer", "de Wit", "Dijkstra", "Yilmaz",
    "El Amrani", "Kaya", "Verhoeven", "Koster", "Prins", "Kok", "Willems",
)  # fmt: skip
BUSINESSES = (
    "Bakkerij", "Café", "Restaurant", "Kapsalon", "Tandartspraktijk", "Drukkerij",
    "Fietsenmaker", "Bloemenwinkel", "Hotel", "Garage", "Supermarkt", "Boekhandel",
    "Sportschool", "Kinderopvang", "Apotheek",
)  # fmt: skip

LETTERS = "ABCDEGHJKLMNPRSTVWXZ"  # used in Dutch postcodes
# Container: (volume m³, kg when full on average, business price per pickup).
CONTAINERS = {
    "240L": (0.24, 25, Decimal("6.50")),
    "660L": (0.66, 70, Decimal("12.00")),
    "1100L": (1.10, 115, Decimal("18.50")),
}


@dataclass(frozen=True)
class DemoPlace:
    code: str
    name: str
    address: str
    lat: float
    lon: float
    kind: str  # "depot" | "landfill"


@dataclass(frozen=True)
class DemoTruck:
    code: str
    name: str
    depot_code: str
    driver_name: str
    driver_phone: str
    driver_email: str
    capacity_kg: int
    capacity_m3: float
    shift_start: time
    shift_end: time
    cost_per_km: Decimal
    cost_per_hour: Decimal


@dataclass(frozen=True)
class DemoCustomer:
    code: str
    name: str
    kind: str  # "household" | "business"
    email: str
    phone: str
    address: str
    postcode: str
    city: str
    lat: float
    lon: float
    locale: str
    container: str
    containers: int
    pickup_weekday: int  # 0 = Monday
    demand_kg: int
    demand_m3: float
    service_minutes: int
    window: tuple[time, time] | None
    contract_start: date
    monthly_fee: Decimal
    price_per_pickup: Decimal


@dataclass(frozen=True)
class DemoCompany:
    name: str
    city: str
    country: str
    currency: str
    tax_region: str
    vat_rate: Decimal
    timezone: str
    centre: tuple[float, float]
    today: date
    depots: list[DemoPlace] = field(default_factory=list)
    facilities: list[DemoPlace] = field(default_factory=list)
    trucks: list[DemoTruck] = field(default_factory=list)
    customers: list[DemoCustomer] = field(default_factory=list)

    def pickups(self, start: date, end: date) -> list[tuple[str, date]]:
        """Every weekly pickup from ``start`` to ``end`` inclusive, as (customer code,
        day), for customers whose contract had started that day; ordered by day."""
        return [
            (customer.code, day)
            for day in _days(start, end)
            for customer in self.customers
            if customer.pickup_weekday == day.weekday() and customer.contract_start <= day
        ]


def _days(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def _scatter(rng: random.Random) -> tuple[float, float]:
    """A point within RADIUS_KM of the centre, denser towards the middle."""
    distance = RADIUS_KM * math.sqrt(rng.random()) * 0.999
    bearing = rng.uniform(0, 2 * math.pi)
    lat = CENTRE[0] + (distance / 111.32) * math.cos(bearing)
    lon = CENTRE[1] + (distance / (111.32 * math.cos(math.radians(CENTRE[0])))) * math.sin(bearing)
    return round(lat, 6), round(lon, 6)


def _phone(rng: random.Random) -> str:
    return f"+316{rng.randrange(10_000_000, 99_999_999)}"


def _slug(name: str) -> str:
    """An ASCII e-mail local part: "Zoë de Jong" -> "zoe.de.jong"."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(ch for ch in ascii_name.lower().replace(" ", ".") if ch.isalnum() or ch == ".")


def _depots() -> list[DemoPlace]:
    return [
        DemoPlace("DEMO-D1", "Depot Lage Weide", "Atoomweg 50, 3542 AB Utrecht",
                  52.1016, 5.0716, "depot"),
        DemoPlace("DEMO-D2", "Depot Nieuwegein", "Ravenswade 4, 3439 LD Nieuwegein",
                  52.0390, 5.0960, "depot"),
    ]  # fmt: skip


def _facilities() -> list[DemoPlace]:
    return [
        DemoPlace("DEMO-F1", "Landfill Nieuwegein-Oost", "Het Klooster 2, 3437 SL Nieuwegein",
                  52.0240, 5.1510, "landfill"),
    ]  # fmt: skip


def _trucks(rng: random.Random) -> list[DemoTruck]:
    trucks = []
    for number in range(1, 11):
        small = number > 7  # three narrow-street trucks for the old centre
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        early = number % 2 == 1
        trucks.append(
            DemoTruck(
                code=f"DEMO-T{number:02d}",
                name=f"{'City' if small else 'Rear loader'} {number:02d}",
                depot_code="DEMO-D1" if number <= 6 else "DEMO-D2",
                driver_name=f"{first} {last}",
                driver_phone=_phone(rng),
                driver_email=f"{_slug(first)}.{_slug(last)}.driver@example.org",
                capacity_kg=4500 if small else 9000,
                capacity_m3=11.0 if small else 21.0,
                shift_start=time(6, 0) if early else time(7, 0),
                shift_end=time(14, 30) if early else time(15, 30),
                cost_per_km=Decimal("0.85") if small else Decimal("1.20"),
                cost_per_hour=Decimal("40.00") if small else Decimal("45.00"),
            )
        )
    return trucks


def _customer(rng: random.Random, number: int, today: date) -> DemoCustomer:
    business = rng.random() < 0.2
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    street = rng.choice(STREETS)
    lat, lon = _scatter(rng)
    postcode = f"35{rng.randrange(11, 89)} {rng.choice(LETTERS)}{rng.choice(LETTERS)}"
    if business:
        container = rng.choice(("660L", "1100L"))
        containers = rng.randint(1, 4)
        name = f"{rng.choice(BUSINESSES)} {last}"
        email = f"info@{_slug(name).replace('.', '-')}-{number}.example.org"
        window = (time(7, 0), time(11, 0)) if rng.random() < 0.5 else None
        service_minutes = 2 + 2 * containers
        monthly_fee = Decimal("29.00")
    else:
        container, containers = "240L", 1
        name = f"{first} {last}"
        email = f"{_slug(first)}.{_slug(last)}.{number}@example.org"
        window = None
        service_minutes = 1
        monthly_fee = Decimal("9.95")
    volume, kg, business_price = CONTAINERS[container]
    # Most contracts are old; about one in twenty started this month (proration shows).
    if rng.random() < 0.05:
        contract_start = today.replace(day=1) + timedelta(days=rng.randrange(0, 14))
    else:
        contract_start = today - timedelta(days=rng.randrange(45, 3 * 365))
    return DemoCustomer(
        code=f"DEMO-C{number:04d}",
        name=name,
        kind="business" if business else "household",
        email=email,
        phone=_phone(rng),
        address=f"{street} {rng.randint(1, 240)}",
        postcode=postcode,
        city="Utrecht",
        lat=lat,
        lon=lon,
        locale="nl" if rng.random() < 0.8 else "en",
        container=container,
        containers=containers,
        pickup_weekday=rng.randrange(0, 5),
        demand_kg=int(kg * containers * rng.uniform(0.6, 1.2)),
        demand_m3=round(volume * containers, 2),
        service_minutes=service_minutes,
        window=window,
        contract_start=contract_start,
        monthly_fee=monthly_fee,
        price_per_pickup=(business_price if business else Decimal("2.50")),
    )


def build_company(today: date, *, customers: int = 300, seed: int = 2026) -> DemoCompany:
    """The demo company as of ``today`` (the business's date). Deterministic in
    (``today``, ``customers``, ``seed``)."""
    if customers < 1:
        raise ValueError("a demo company needs at least one customer")
    rng = random.Random(seed)
    return DemoCompany(
        name="Groenweg Afvalinzameling (demo)",
        city="Utrecht",
        country="NL",
        currency="EUR",
        tax_region="NL",
        vat_rate=Decimal("0.21"),
        timezone="Europe/Amsterdam",
        centre=CENTRE,
        today=today,
        depots=_depots(),
        facilities=_facilities(),
        trucks=_trucks(rng),
        customers=[_customer(rng, number, today) for number in range(1, customers + 1)],
    )
