#!/usr/bin/env python3
"""Measures the context engine on the NegEx/ConText test set through `carebridge policy context`.

Usage: scripts/eval_negex.py [path/to/carebridge] [path/to/shared/data/negex]

Reads rsAnnotations-1-120-random.txt (2,376 findings with negation, temporality and experiencer
labels), sends `concept<TAB>sentence` lines to `policy context`, and prints precision, recall and F
for negated, historical, hypothetical and other-experiencer, beside the published GenNegEx and
GenConText figures quoted in the data's SOURCE.md.
"""
import os
import subprocess
import sys
import json

here = os.path.dirname(os.path.abspath(__file__))
binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "target", "release", "carebridge")
data = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "..", "shared", "data", "negex")

rows = []
with open(os.path.join(data, "rsAnnotations-1-120-random.txt"), encoding="utf-8") as handle:
    next(handle)
    for line in handle:
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 6:
            continue
        _, concept, sentence, negation, temporality, experiencer = parts[:6]
        sentence = sentence.strip().strip('"').replace("\t", " ")
        rows.append((concept.strip(), sentence, negation.strip(), temporality.strip(), experiencer.strip()))

stdin = "".join(f"{concept}\t{sentence}\n" for concept, sentence, *_ in rows)
result = subprocess.run([binary, "policy", "context"], input=stdin, capture_output=True, text=True, check=True)
verdicts = [json.loads(line) for line in result.stdout.splitlines()]
assert len(verdicts) == len(rows), (len(verdicts), len(rows))

def score(name, gold, predicted, published):
    tp = sum(1 for g, p in zip(gold, predicted) if g and p)
    fp = sum(1 for g, p in zip(gold, predicted) if not g and p)
    fn = sum(1 for g, p in zip(gold, predicted) if g and not p)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    print(f"{name:<14} TP {tp:>4} FP {fp:>4} FN {fn:>4}  P {precision:.3f} R {recall:.3f} F {f:.3f}   published: {published}")
    return f

print(f"NegEx/ConText test set, {len(rows)} findings")
score("negated", [r[2] == "Negated" for r in rows], [v["negated"] for v in verdicts],
      "GenNegEx F 0.947, GenConText F 0.981")
score("historical", [r[3] == "Historical" for r in rows], [v["temporality"] == "historical" for v in verdicts],
      "GenConText P 0.754 R 0.595 F 0.665")
score("hypothetical", [r[3] == "Not particular" for r in rows], [v["temporality"] == "hypothetical" for v in verdicts],
      "GenConText P 1.000 R 0.929 F 0.963")
score("other person", [r[4] != "Patient" for r in rows], [v["experiencer"] == "other" for v in verdicts],
      "GenConText P 1.000 R 0.667")
if os.environ.get("SHOW_ERRORS"):
    kind = os.environ["SHOW_ERRORS"]
    for row, verdict in zip(rows, verdicts):
        gold = {"negated": row[2] == "Negated", "historical": row[3] == "Historical", "hypothetical": row[3] == "Not particular"}[kind]
        got = verdict["negated"] if kind == "negated" else verdict["temporality"] == kind
        if gold != got:
            print(("FN" if gold else "FP"), row[0], "|", row[1][:200])
