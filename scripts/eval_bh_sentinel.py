#!/usr/bin/env python3
"""Measures self-harm / suicide / harm-to-others detection on the bh-sentinel fixtures through
`carebridge policy check`.

Usage: scripts/eval_bh_sentinel.py [path/to/carebridge] [path/to/shared/data/bh-sentinel]

A fixture counts as positive when it expects a self-harm (SH-*) or harm-to-others (HO-*) flag;
it is detected when the decision is urgent or emergency. A fixture that expects no flag, or only
suppressed ones, counts as negative; flagging it is a false alarm. Other domains (substance use,
clinical deterioration, protective factors) are outside Carebridge's red-flag rules and skipped.
Requires PyYAML (`python3 -m pip install pyyaml`).
"""
import json
import os
import subprocess
import sys

import yaml

here = os.path.dirname(os.path.abspath(__file__))
binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "target", "release", "carebridge")
data = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "..", "shared", "data", "bh-sentinel")

with open(os.path.join(data, "test_fixtures.yaml"), encoding="utf-8") as handle:
    groups = yaml.safe_load(handle)

cases = []
for group, fixtures in groups.items():
    if group.startswith("_") or not isinstance(fixtures, list):
        continue
    for fixture in fixtures:
        flags = [flag for flag in fixture.get("expect_flags") or [] if flag.startswith(("SH-", "HO-"))]
        others = [flag for flag in fixture.get("expect_flags") or [] if not flag.startswith(("SH-", "HO-"))]
        text = " ".join(str(fixture["input"]).split())
        if flags:
            cases.append((group, text, True))
        elif fixture.get("expect_none") or (not others):
            cases.append((group, text, False))

result = subprocess.run([binary, "policy", "check"], input="".join(text + "\n" for _, text, _ in cases),
                        capture_output=True, text=True, check=True)
decisions = [json.loads(line) for line in result.stdout.splitlines()]
assert len(decisions) == len(cases)

positives = [(case, decision) for case, decision in zip(cases, decisions) if case[2]]
negatives = [(case, decision) for case, decision in zip(cases, decisions) if not case[2]]
hit = sum(1 for _, decision in positives if decision["level"] != "routine")
false_alarms = sum(1 for _, decision in negatives if decision["level"] != "routine")
print(f"bh-sentinel fixtures: {len(positives)} self-harm/harm-to-others positives, {len(negatives)} negatives")
print(f"detected (urgent or emergency): {hit}/{len(positives)} = {hit / max(len(positives), 1):.1%}")
print(f"false alarms on negatives: {false_alarms}/{len(negatives)} = {false_alarms / max(len(negatives), 1):.1%}")
if os.environ.get("SHOW_ERRORS"):
    for (group, text, positive), decision in positives + negatives:
        if (decision["level"] != "routine") != positive:
            print(("MISS " if positive else "FALSE ") + group + ": " + text[:160] + " -> " + json.dumps(decision))
