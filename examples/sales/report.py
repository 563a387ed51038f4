"""Writes a plain-text report from the region x product aggregate."""
import argparse
import collections

parser = argparse.ArgumentParser()
parser.add_argument("agg")
parser.add_argument("out")
parser.add_argument("--top", type=int, default=5)
parser.add_argument("--title", default="Sales")
args = parser.parse_args()

rows = []
with open(args.agg, encoding="utf-8") as f:
    for line in f:
        region, product, units, revenue = line.rstrip("\n").split(",")
        rows.append((region, product, int(units), float(revenue)))

by_region = collections.defaultdict(float)
for region, _, _, revenue in rows:
    by_region[region] += revenue

with open(args.out, "w", encoding="utf-8") as out:
    out.write(f"{args.title}\n{'=' * len(args.title)}\n\n")
    out.write(f"Top {args.top} region/product pairs by revenue:\n")
    for region, product, units, revenue in sorted(rows, key=lambda r: (-r[3], r[0], r[1]))[: args.top]:
        out.write(f"  {region:<8} {product:<6} {units:>8} units {revenue:>14,.2f}\n")
    out.write("\nRevenue by region:\n")
    for region in sorted(by_region):
        out.write(f"  {region:<8} {by_region[region]:>14,.2f}\n")
    out.write(f"\nTotal: {sum(by_region.values()):,.2f}\n")
