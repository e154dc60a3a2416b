#!/usr/bin/env python3
"""Writes a payout batch CSV for the end-to-end benchmark.

usage: gen_batch.py OUT.csv ROWS PREFIX
Rows: unique ids PREFIX-<n>, amounts 1.00..99.99 USD, 14-digit account numbers (none ends in 13,
so every payout succeeds at the sandbox), operator BNK_000.
"""
import sys


def main() -> None:
    out, rows, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(out, "w", newline="") as f:
        f.write("id,amount,currency,account_number,account_name,operator_code\n")
        lines = []
        for i in range(rows):
            cents = 100 + (i * 7919) % 9900
            lines.append(f"{prefix}-{i},{cents // 100}.{cents % 100:02d},USD,DE{i:012d}55,Bench Payee {i % 1000},BNK_000\n")
        f.write("".join(lines))


if __name__ == "__main__":
    main()
