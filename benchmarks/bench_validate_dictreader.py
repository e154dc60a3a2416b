#!/usr/bin/env python3
"""Reads a batch CSV with csv.DictReader (UTF-8 with BOM allowed, as payoutd accepts) and prints
rows/s and MB/s to stderr, and "<wall seconds> <cpu seconds>" to stdout. Parsing only: no validation."""
import csv
import os
import sys
import time

path = sys.argv[1]
size_mb = os.path.getsize(path) / 1e6
start = time.perf_counter()
cpu_start = time.process_time()
rows = 0
with open(path, newline="", encoding="utf-8-sig") as f:
    for row in csv.DictReader(f):
        rows += 1
elapsed = time.perf_counter() - start
cpu = time.process_time() - cpu_start
print(f"file: {path} ({size_mb:.1f} MB, {rows} rows)", file=sys.stderr)
print(f"DictReader: {elapsed:.3f} s, {rows / elapsed:.0f} rows/s, {size_mb / elapsed:.1f} MB/s", file=sys.stderr)
print(f"DictReader cpu: {cpu:.3f} s", file=sys.stderr)
print(f"{elapsed:.3f} {cpu:.3f}")
