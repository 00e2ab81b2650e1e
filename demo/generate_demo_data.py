"""Write demo/expenses.csv: a few hundred plausible expenses of four small businesses.

Deterministic (fixed seed), so the committed file can be regenerated exactly:
    python demo/generate_demo_data.py
"""

import csv
import datetime
import random
from decimal import Decimal
from pathlib import Path

COLUMNS = (
    "business_id",
    "expense_id",
    "date",
    "supplier",
    "description",
    "department",
    "merchant_category",
    "amount",
    "vat_amount",
    "currency",
    "payment_method",
    "category",
)

# (supplier spellings, description, merchant category, amount range, category) per business.
BUSINESSES = {
    "harbour_bakery": [
        (
            ["SQ *BLUE HERON CAFE", "Blue Heron Cafe #0042", "SUMUP *Blue Heron Cafe"],
            "Coffee with supplier",
            "Eating Places, Restaurants",
            (3, 25),
            "Meals and entertainment",
        ),
        (["BOOKER WHOLESALE 114", "Booker Ltd"], "Flour and butter", "Grocery Stores", (80, 600), "Cost of goods sold"),
        (["SHELL 0421 PORTSMOUTH", "Shell Fuel"], "Van fuel", "Service Stations", (40, 110), "Motor expenses"),
        (
            ["PAYPAL *ADOBE", "Adobe Systems"],
            "Creative Cloud subscription",
            "Computer Software Stores",
            (20, 60),
            "Software subscriptions",
        ),
        (["British Gas", "BRITISH GAS BUSINESS"], "Gas and electricity", "Utilities", (150, 420), "Utilities"),
        (
            ["AMZN Mktp UK*1F37B5QZ4", "Amazon.co.uk*MS34X6L54"],
            "Baking trays",
            "Other Direct Marketers",
            (10, 90),
            "Equipment",
        ),
    ],
    "northside_plumbing": [
        (["SCREWFIX DIRECT", "Screwfix 0831"], "Fittings", "Lumber/Build. Supply Stores", (5, 250), "Materials"),
        (["TOOLSTATION 229", "Toolstation"], "Pipe and solder", "Hardware Stores", (8, 180), "Materials"),
        (["BP 8812 LEEDS", "BP Connect"], "Van diesel", "Service Stations", (50, 130), "Motor expenses"),
        (["GREGGS 1187", "Greggs"], "Lunch on site", "Fast Food Restaurants", (3, 15), "Subsistence"),
        (
            ["VODAFONE LTD", "Vodafone"],
            "Mobile contract",
            "Telecommunication Services",
            (25, 70),
            "Telephone and internet",
        ),
        (
            ["XERO UK", "PAYPAL *XERO"],
            "Accounting software",
            "Computer Software Stores",
            (30, 45),
            "Software subscriptions",
        ),
    ],
    "brightlane_studio": [
        (
            ["ADOBE *CREATIVE CLOUD", "Adobe"],
            "Design licences",
            "Computer Software Stores",
            (50, 80),
            "Software subscriptions",
        ),
        (["TRAINLINE.COM", "Trainline"], "Client visit", "Passenger Railways", (20, 190), "Travel"),
        (
            ["PRET A MANGER 0203", "Pret A Manger"],
            "Client lunch",
            "Eating Places, Restaurants",
            (6, 60),
            "Meals and entertainment",
        ),
        (["WEWORK", "WeWork UK Ltd"], "Desk rental", "Real Estate Agents and Managers", (300, 900), "Rent"),
        (["APPLE STORE R245", "Apple Online Store"], "Laptop", "Computer Stores", (200, 2500), "Equipment"),
        (["UBER *TRIP", "Uber BV"], "Taxi to client", "Taxicabs/Limousines", (8, 45), "Travel"),
    ],
    "greenfield_gardens": [
        (
            ["WICKES 0110", "Wickes Building Supplies"],
            "Sleepers and gravel",
            "Lumber/Build. Supply Stores",
            (20, 400),
            "Materials",
        ),
        (["B&Q 1234", "B & Q"], "Compost", "Home Supply Warehouse Stores", (10, 200), "Materials"),
        (["ESSO 7731", "Esso"], "Truck fuel", "Service Stations", (60, 150), "Motor expenses"),
        (["COSTA COFFEE 43042930", "Costa"], "Coffee", "Fast Food Restaurants", (2, 12), "Subsistence"),
        (
            ["GOOGLE *GSUITE", "Google Workspace"],
            "Email",
            "Computer Software Stores",
            (10, 30),
            "Software subscriptions",
        ),
        (["HSS HIRE", "HSS Hire Service"], "Mini digger hire", "Equipment Rental", (90, 450), "Equipment hire"),
    ],
}

ROWS_PER_BUSINESS = 100
START = datetime.date(2025, 1, 6)


def generate(seed: int = 20261204) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for business_id, profile in BUSINESSES.items():
        dates = sorted(START + datetime.timedelta(days=rng.randrange(0, 330)) for _ in range(ROWS_PER_BUSINESS))
        for number, date in enumerate(dates, start=1):
            spellings, description, merchant_category, (low, high), category = rng.choice(profile)
            amount = Decimal(rng.uniform(low, high)).quantize(Decimal("0.01"))
            refund = rng.random() < 0.03
            rows.append(
                {
                    "business_id": business_id,
                    "expense_id": f"{business_id}-{number:05d}",
                    "date": date.isoformat(),
                    "supplier": rng.choice(spellings),
                    "description": description if rng.random() < 0.7 else "",
                    "department": "",
                    "merchant_category": merchant_category,
                    "amount": str(-amount if refund else amount),
                    "vat_amount": str((amount / 6).quantize(Decimal("0.01"))) if rng.random() < 0.5 else "",
                    "currency": "GBP",
                    "payment_method": "card",
                    "category": category,
                }
            )
    return rows


def main():
    target = Path(__file__).with_name("expenses.csv")
    with target.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(generate())
    print(f"Wrote {target}")


if __name__ == "__main__":
    main()
