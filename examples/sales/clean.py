"""Keeps well-formed rows with at least --min-units units; normalises regions."""
import argparse
import csv

parser = argparse.ArgumentParser()
parser.add_argument("raw")
parser.add_argument("out")
parser.add_argument("--min-units", type=int, default=1)
args = parser.parse_args()

kept = dropped = 0
with open(args.raw, newline="", encoding="utf-8") as src, \
        open(args.out, "w", newline="", encoding="utf-8") as dst:
    reader = csv.DictReader(src)
    writer = csv.writer(dst, lineterminator="\n")
    writer.writerow(["date", "region", "product", "units", "unit_price"])
    for row in reader:
        try:
            units = int(row["units"])
            price = float(row["unit_price"])
        except ValueError:
            dropped += 1
            continue
        if units < args.min_units:
            dropped += 1
            continue
        region = row["region"].strip().lower()
        writer.writerow([row["date"], region, row["product"], units, f"{price:.2f}"])
        kept += 1
print(f"kept {kept} rows, dropped {dropped}")
