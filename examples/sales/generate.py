"""Writes deterministic raw sales data (with some malformed rows) as CSV."""
import argparse
import random

REGIONS = ["north", "south", "east", "west", "central"]
PRODUCTS = ["anvil", "bolt", "cog", "drill", "edger", "file", "gear", "hinge"]
PRICES = {"anvil": 120.0, "bolt": 0.25, "cog": 3.5, "drill": 89.9,
          "edger": 45.0, "file": 7.25, "gear": 12.0, "hinge": 2.1}

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--rows", type=int, default=60000)
parser.add_argument("--seed", type=int, default=7)
args = parser.parse_args()

rng = random.Random(args.seed)
with open(args.out, "w", encoding="utf-8") as f:
    f.write("date,region,product,units,unit_price,note\n")
    for i in range(args.rows):
        day = 1 + i * 365 // args.rows
        date = f"2025-{1 + (day - 1) // 31:02d}-{1 + (day - 1) % 28:02d}"
        region = rng.choice(REGIONS)
        product = rng.choice(PRODUCTS)
        units = rng.randint(0, 40)
        price = PRICES[product] * (1 + rng.uniform(-0.1, 0.1))
        note = rng.choice(["", "", "", "promo", "returning customer", "bulk order"])
        kind = rng.random()
        if kind < 0.01:
            units = ""  # missing quantity
        elif kind < 0.015:
            region = region.upper() + " "  # messy spelling
        f.write(f"{date},{region},{product},{units},{price:.2f},{note}\n")
