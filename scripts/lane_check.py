"""A CI lane's junit report: at least one test ran and none skipped (a lane exists to run them).

usage: python scripts/lane_check.py REPORT.xml LANE
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    report, lane = argv
    cases = list(ET.parse(report).getroot().iter("testcase"))
    skipped = [
        f"{c.get('classname')}::{c.get('name')}" for c in cases if c.find("skipped") is not None
    ]
    print(f"{lane} lane: {len(cases)} tests, {len(skipped)} skipped")
    if not cases or skipped:
        print(
            f"{lane} lane: tests skipped (or none ran): " + ", ".join(skipped[:20]),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
