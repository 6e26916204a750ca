#!/usr/bin/python3
"""rel_table.py FIGURES: the table of a reliability run (the JSON lines
the tests append to $REL_FIGURES), per test and summed, for the README."""
import json
import sys

SUMMED = ("faults injected", "bad inputs tried", "connections held",
          "pushes sent", "pushes delivered", "pushes lost",
          "pushes lost (reported)")


def main():
    rows = []
    with open(sys.argv[1]) as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    tests = []
    for r in rows:
        if r["test"] not in tests:
            tests.append(r["test"])
    w = max([len(t) for t in tests] + [10])
    n = max([len(r["name"]) for r in rows] + [10])
    print("\nreliability figures")
    print("%-*s  %-*s  %s" % (w, "test", n, "figure", "value"))
    print("-" * (w + n + 16))
    for t in tests:
        for r in rows:
            if r["test"] == t:
                print("%-*s  %-*s  %s" % (w, t, n, r["name"], r["value"]))
    print("\ntotals")
    for k in SUMMED:
        vals = [r["value"] for r in rows if r["name"] == k
                and isinstance(r["value"], (int, float))]
        if k == "connections held":
            print("  %-24s %d" % ("connections held (most)", max(vals or [0])))
        else:
            print("  %-24s %d" % (k, sum(vals)))


if __name__ == "__main__":
    main()
