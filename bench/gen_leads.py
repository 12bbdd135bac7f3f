#!/usr/bin/env python3
"""Deterministic generator of a realistic leads CSV for import benchmarks.

A copy of the generator the project kept outside the repository until issue 15 (the same
output byte for byte), so that no benchmark depends on a file outside the repository.

Usage: python gen_leads.py ROWS OUT.csv [--seed N]

Columns: email, first_name, last_name, phone, city, budget_max, beds, areas,
tags, timezone.

* phones: mixed US / PH national and international formats, e.g.
  "(415) 555-0132", "415.555.0132", "+1 415 555 0132", "+63 917 123 4567",
  "0917-123-4567", "09171234567".  Every *valid* phone is distinct (derived
  from the row counter through a bijection), so the only phone collisions
  are the planted duplicates.
* ~2% duplicates: a copy of an earlier lead whose email differs only in
  case and surrounding whitespace (phone re-written in another format).
* ~1% invalid rows: half a bad email, half a bad phone.
* timezone blank for ~15% of rows.

Same seed + same ROWS => byte-identical file.  The summary line printed on
stderr gives the exact number of planted duplicates and invalid rows.
"""

# ruff: noqa: E741, B007, RUF005, SIM905  (kept as written: its output must not change)
import argparse
import csv
import random
import sys

FIRST = """James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth
David Barbara Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher
Lisa Daniel Nancy Matthew Betty Anthony Margaret Mark Sandra Donald Ashley Steven
Kimberly Paul Emily Andrew Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian
Dorothy George Melissa Timothy Deborah Ronald Stephanie Edward Rebecca Jason Sharon
Jeffrey Laura Ryan Cynthia Jacob Kathleen Gary Amy Nicholas Angela Eric Shirley
Jonathan Anna Stephen Brenda Larry Pamela Justin Emma Scott Nicole Brandon Helen
Benjamin Samantha Samuel Katherine Gregory Christine Alexander Debra Frank Rachel
Patrick Carolyn Raymond Janet Jack Catherine Dennis Maria Jerry Heather Tyler Diane
Aaron Ruth Jose Julie Adam Olivia Nathan Joyce Henry Virginia Douglas Victoria
Zachary Kelly Peter Lauren Kyle Christina Ethan Joan Walter Evelyn Noah Judith
Jeremy Megan Christian Andrea Keith Cheryl Roger Hannah Terry Jacqueline Gerald
Martha Harold Gloria Sean Teresa Austin Ann Carl Sara Arthur Madison Lawrence
Frances Dylan Kathryn Jesse Janice Jordan Jean Bryan Abigail Billy Alice Joe Judy
Bruce Sophia Gabriel Grace Logan Denise Albert Amber Willie Doris Alan Marilyn Juan
Danielle Wayne Beverly Elijah Isabella Randy Theresa Roy Diana Vincent Natalie
Ralph Brittany Eugene Charlotte Russell Marie Bobby Kayla Mason Alexis Philip Lori
Jhun Maricel Rodel Jomar Kristine Ma.Luisa Jericho Angelica Rommel Princess Jun-Jun
Marites Arnel Lovely Joross Cherry Renato Analyn Nestor Rowena Dindo Jocelyn José
Zoë Chloé Renée Andrés Nuñez""".split()

LAST = """Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez
Hernandez Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee
Perez Thompson White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen
King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera
Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker Cruz
Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz
Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson
Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo
Sanders Patel Myers Long Ross Foster Jimenez Santos Bautista Villanueva Dela-Cruz
Del-Rosario Aquino Mercado Castro Pascual Ocampo Soriano Manalo Dizon Tolentino
Navarro Salazar Gonzales Lim Tan Sy Ong Co Chua Go Yap O'Brien O'Neil McDonald
Peña Muñoz Ibáñez""".split()

DOMAINS = (
    ["gmail.com"] * 40
    + ["yahoo.com"] * 12
    + ["outlook.com"] * 8
    + ["hotmail.com"] * 6
    + ["icloud.com"] * 5
    + ["aol.com"] * 2
    + ["yahoo.com.ph"] * 3
    + [
        "compass.com",
        "kw.com",
        "remax.net",
        "sothebysrealty.com",
        "ayalaland.com.ph",
        "smdc.com",
        "acme-corp.io",
        "startup.co",
        "mail.example.org",
        "lawfirm.legal",
        "uni.edu",
        "ph.bdo.com.ph",
    ]
)

US_CITIES = [  # city, area codes, timezone
    ("San Francisco", ["415", "628"], "America/Los_Angeles"),
    ("Oakland", ["510"], "America/Los_Angeles"),
    ("San Jose", ["408", "669"], "America/Los_Angeles"),
    ("Los Angeles", ["213", "310", "323"], "America/Los_Angeles"),
    ("Seattle", ["206"], "America/Los_Angeles"),
    ("Austin", ["512", "737"], "America/Chicago"),
    ("Chicago", ["312", "773"], "America/Chicago"),
    ("Denver", ["303", "720"], "America/Denver"),
    ("Phoenix", ["602", "480"], "America/Phoenix"),
    ("New York", ["212", "646", "718", "917"], "America/New_York"),
    ("Boston", ["617", "857"], "America/New_York"),
    ("Miami", ["305", "786"], "America/New_York"),
    ("Atlanta", ["404", "678"], "America/New_York"),
]
PH_CITIES = [
    "Makati",
    "Taguig",
    "Quezon City",
    "Pasig",
    "Manila",
    "Mandaluyong",
    "Cebu City",
    "Davao City",
    "Parañaque",
    "Muntinlupa",
]
PH_MOBILE = [
    "905",
    "906",
    "915",
    "916",
    "917",
    "926",
    "927",
    "935",
    "936",
    "945",
    "955",
    "956",
    "965",
    "966",
    "975",
    "977",
    "995",
    "997",
    "908",
    "918",
    "919",
    "920",
    "921",
    "928",
    "929",
    "939",
    "947",
    "949",
    "951",
    "961",
    "998",
    "999",
]
AREAS = {
    "San Francisco": [
        "Mission",
        "SoMa",
        "Noe Valley",
        "Pacific Heights",
        "Sunset",
        "Richmond",
        "Bernal Heights",
        "Dogpatch",
    ],
    "Makati": [
        "Legaspi Village",
        "Salcedo Village",
        "Rockwell",
        "Poblacion",
        "San Lorenzo",
        "Bel-Air",
    ],
    "Taguig": ["BGC", "McKinley Hill", "Uptown", "Forbes Town"],
    "New York": ["Chelsea", "Tribeca", "Harlem", "Williamsburg", "Astoria", "Upper West Side"],
}
GENERIC_AREAS = [
    "Downtown",
    "Midtown",
    "Uptown",
    "Riverside",
    "Old Town",
    "Westside",
    "Eastside",
    "North End",
    "Lakeview",
    "Hillside",
]
TAGS = [
    "buyer",
    "seller",
    "investor",
    "first-time",
    "hot",
    "warm",
    "cold",
    "referral",
    "open-house",
    "zillow",
    "facebook-ad",
    "pre-approved",
    "relocating",
    "condo",
    "house",
    "vip",
]
BAD_EMAILS = [
    "{f}.{l}@",
    "{f} {l}@gmail.com",
    "{f}{l}.gmail.com",
    "{f}@@yahoo.com",
    "@{l}.com",
    "{f}.{l}@gmail",
    "{f}..{l}@gmail.com",
    "{f}.{l}@-bad-.com",
    "n/a",
    "",
]
BAD_PHONES = [
    "12345",
    "555-CALL-NOW",
    "+63 917 12",
    "000-000-0000",
    "n/a",
    "(415) 555-01",
    "+1 999 123 4567",
    "0917-123-45678-99",
    "tbd",
    "",
]


def us_phone(area, x, rng):
    exch = 200 + (x // 10000) % 800  # NXX, N in 2..9
    line = x % 10000
    d = f"{area}{exch:03d}{line:04d}"
    fmt = rng.random()
    if fmt < 0.35:
        return f"({d[:3]}) {d[3:6]}-{d[6:]}"
    if fmt < 0.55:
        return f"{d[:3]}-{d[3:6]}-{d[6:]}"
    if fmt < 0.65:
        return f"{d[:3]}.{d[3:6]}.{d[6:]}"
    if fmt < 0.85:
        return f"+1 {d[:3]} {d[3:6]} {d[6:]}"
    if fmt < 0.95:
        return d
    return f"1-{d[:3]}-{d[3:6]}-{d[6:]}"


def ph_phone(prefix, x, rng):
    sub = f"{x % 10_000_000:07d}"
    fmt = rng.random()
    if fmt < 0.30:
        return f"+63 {prefix} {sub[:3]} {sub[3:]}"
    if fmt < 0.55:
        return f"0{prefix}-{sub[:3]}-{sub[3:]}"
    if fmt < 0.75:
        return f"0{prefix}{sub}"
    if fmt < 0.90:
        return f"+63{prefix}{sub}"
    return f"0{prefix} {sub[:3]} {sub[3:]}"


def reformat(phone, rng):
    """Same number, another surface format (used for planted duplicates)."""
    digits = "".join(c for c in phone if c.isdigit())
    if phone.startswith("+63") or phone.startswith("0"):
        nat = digits[-10:]
        return ph_phone(nat[:3], int(nat[3:]), rng)
    nat = digits[-10:]
    return f"+1 ({nat[:3]}) {nat[3:6]}-{nat[6:]}"


def mangle_case(email, rng):
    out = "".join(c.upper() if rng.random() < 0.4 else c for c in email)
    if out == email:
        out = email.upper()
    return rng.choice(["", " ", "  ", "\t"]) + out + rng.choice(["", " ", " "])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rows", type=int)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=20240601)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    n_dup = n_bad_email = n_bad_phone = 0
    kept = []  # sample of earlier valid rows, source for duplicates
    with open(a.out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "email",
                "first_name",
                "last_name",
                "phone",
                "city",
                "budget_max",
                "beds",
                "areas",
                "tags",
                "timezone",
            ]
        )
        uid = 0
        for i in range(a.rows):
            r = rng.random()
            if r < 0.02 and kept:
                src = list(rng.choice(kept))
                src[0] = mangle_case(src[0], rng)
                if rng.random() < 0.5:
                    src[3] = reformat(src[3], rng)
                if rng.random() < 0.3:
                    src[8] = ";".join(sorted(set(src[8].split(";") + [rng.choice(TAGS)])))
                w.writerow(src)
                n_dup += 1
                continue
            uid += 1
            f = rng.choice(FIRST)
            l = rng.choice(LAST)
            fl, ll = f.lower().replace(".", ""), l.lower().replace("'", "")
            style = rng.random()
            if style < 0.4:
                local = f"{fl}.{ll}{uid}"
            elif style < 0.7:
                local = f"{fl[0]}{ll}{uid}"
            elif style < 0.85:
                local = f"{fl}_{ll}_{uid}"
            else:
                local = f"{ll}.{fl}+{uid}"
            email = f"{local}@{rng.choice(DOMAINS)}"
            if rng.random() < 0.55:
                city, acs, tz = rng.choice(US_CITIES)
                x = (uid * 104729 + 3_141_592) % 8_000_000  # bijective: unique phones
                phone = us_phone(rng.choice(acs), x, rng)
                budget = rng.randrange(300, 4000) * 1000
            else:
                city = rng.choice(PH_CITIES)
                tz = "Asia/Manila"
                x = (uid * 7919 + 2_718_281) % 10_000_000
                phone = ph_phone(rng.choice(PH_MOBILE), x, rng)
                budget = rng.randrange(30, 800) * 100_000
            if rng.random() < 0.15:
                tz = ""
            pool = AREAS.get(city, GENERIC_AREAS)
            areas = ", ".join(rng.sample(pool, rng.randint(1, 3)))
            tags = ";".join(rng.sample(TAGS, rng.randint(0, 4)))
            beds = str(rng.randint(1, 5)) if rng.random() > 0.05 else ""
            row = [email, f, l, phone, city, str(budget), beds, areas, tags, tz]
            r2 = rng.random()
            if r2 < 0.005:
                row[0] = rng.choice(BAD_EMAILS).format(f=fl, l=ll)
                n_bad_email += 1
            elif r2 < 0.010:
                row[3] = rng.choice(BAD_PHONES)
                n_bad_phone += 1
            else:
                if len(kept) < 5000:
                    kept.append(row)
                elif rng.random() < 0.01:
                    kept[rng.randrange(5000)] = row
            w.writerow(row)
    print(
        f"rows={a.rows} planted_duplicates={n_dup} bad_email={n_bad_email} bad_phone={n_bad_phone}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
