"""Run the bad-input catalog (tests/test_bad_input_catalog.py) and print a Markdown table.

Columns: id, the call (its source line), the outcome class -- clear error naming the argument /
understandable third-party error / cryptic error / silently wrong result / no error -- and the
first line of the message. Entries that raise the expected exception with a message naming the
argument are "clear"; the others take their class from the catalog's ``XFAIL`` dict (which says
what each gives today), or, when missing there, "no error" / "cryptic error".

Usage:  PYTHONPATH=src python tools/bad_input_table.py [--only-unclear] [--time] > table.md
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import inspect
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_catalog():
    path = ROOT / "tests" / "test_bad_input_catalog.py"
    spec = importlib.util.spec_from_file_location("test_bad_input_catalog", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def call_source(c) -> str:
    """The call as written: the entry's ``text``, else the body of its lambda (up to the closing bracket)."""
    if getattr(c, "text", ""):
        return c.text
    try:
        src = " ".join(inspect.getsource(c.call).split())
    except (OSError, TypeError):
        return "?"
    if "lambda" not in src:
        return src[:110]
    src = src[src.index("lambda"):]
    depth, start = 0, None
    for i, ch in enumerate(src):
        if start is None:
            if ch == ":" and depth == 0:
                start = i + 1
            elif ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                return src[start:i].strip()[:110]
            depth -= 1
        elif ch == "," and depth == 0:
            return src[start:i].strip()[:110]
    return src[start or 0:].strip()[:110]


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()[:160]


def classify(cat, c):
    kind, what = cat.run_case(c)
    if kind == "raised" and cat.is_clear(c, what):
        first = str(what).splitlines()[0] if str(what) else ""
        return cat.CLEAR, f"{type(what).__name__}: {first}"
    if kind == "raised":
        first = str(what).splitlines()[0] if str(what) else "(empty message)"
        message = f"{type(what).__name__}: {first}"
        if c.id in cat.XFAIL:
            return cat.XFAIL[c.id][0], message
        return cat.CRYPTIC, message
    outcome = cat.XFAIL[c.id][0] if c.id in cat.XFAIL else cat.NONE
    return outcome, f"(returned {type(what).__name__})"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only-unclear", action="store_true", help="list only entries that are not clear")
    ap.add_argument("--time", action="store_true", help="add a seconds column")
    args = ap.parse_args(argv)
    cat = load_catalog()
    rows, counts = [], collections.Counter()
    for c in cat.CASES:
        t0 = time.perf_counter()
        outcome, message = classify(cat, c)
        dt = time.perf_counter() - t0
        counts[outcome] += 1
        if args.only_unclear and outcome == cat.CLEAR:
            continue
        row = [f"`{c.id}`", f"`{cell(call_source(c))}`", outcome, cell(message)]
        if args.time:
            row.append(f"{dt:.2f}")
        rows.append(row)
    head = ["id", "call", "outcome", "message (first line)"] + (["s"] if args.time else [])
    print(f"{len(cat.CASES)} bad inputs: " + ", ".join(f"{n} {k}" for k, n in counts.most_common()))
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
