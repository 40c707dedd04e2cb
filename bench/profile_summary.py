"""Summarize a py-spy ``--format raw`` profile (collapsed stacks): where the samples go.

    python bench/profile_summary.py PROFILE.txt [--top 25] [--match guard/]

Prints the functions with the most *inclusive* samples (the function or anything it
calls was running) and the most *self* samples (the innermost frame), as percentages of
all samples. ``--match`` restricts the inclusive list to frames whose file contains the
text (e.g. ``guard/`` for guard's own code).
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path


def load(path: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    inclusive: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            self_time[frames[-1]] += count
    return inclusive, self_time, total


def short(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py:123)`` with two path segments kept."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    parts = where.split("/")
    return f"{name} ({'/'.join(parts[-2:])})" if where else name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="")
    args = parser.parse_args()
    inclusive, self_time, total = load(args.profile)
    if total == 0:
        print("no samples")
        return
    print(f"{total} samples")
    print("\ninclusive (function and its callees):")
    shown = 0
    for frame, count in inclusive.most_common():
        if args.match and args.match not in frame:
            continue
        print(f"  {count / total:6.1%}  {short(frame)}")
        shown += 1
        if shown >= args.top:
            break
    print("\nself (innermost frame):")
    for frame, count in self_time.most_common(args.top):
        print(f"  {count / total:6.1%}  {short(frame)}")


if __name__ == "__main__":
    main()
