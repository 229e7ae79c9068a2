#!/usr/bin/env python3
"""Trains the statistical safety net (policies/safety_net_weights.tsv and the biases in
policies/safety_net.toml) from the labelled development sets and the policy tests.

    python3 scripts/train_safety_net.py target/release/carebridge          # train and write
    python3 scripts/train_safety_net.py target/release/carebridge --cv     # 5-fold table only

Needs numpy, scipy and scikit-learn (`pip install scikit-learn`); the server and the tests do
not. Held-out sets (blind*, heldout, fresh) are never read here: they stay a fair measure.

Features are those `src/policy/safety_net.rs` computes: each word of the message's normal form
(`carebridge policy normalize`) and each pair of neighbouring words, punctuation left out,
present or absent. Two logistic regressions share them: "urgent or higher" and "emergency".
"""
import glob
import os
import re
import subprocess
import sys
import tomllib

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

LEVEL = {"routine": 0, "urgent": 1, "emergency": 2}
HELD_OUT = re.compile(r"^(blind\d*|heldout|fresh)\.tsv$")
# L2 strength (scikit-learn's C: larger is weaker) and the smallest weight kept in the file.
C = 1.0
KEEP = 0.01
# The labelled sets are mostly red flags (about 60% urgent or higher, 35% emergencies); patient
# traffic is mostly routine. The biases are moved from the sets' share to these shares, so that a
# message the net knows nothing about reads as unlikely rather than even odds.
PRIOR_URGENT = 0.15
PRIOR_EMERGENCY = 0.05


def logit(p):
    return np.log(p / (1 - p))


def prior_shift(labels, positive, prior):
    share = positive(labels).mean()
    return logit(prior) - logit(share)


def labelled_lines(root):
    lines = []
    for path in sorted(glob.glob(os.path.join(root, "policies/eval/*.tsv"))):
        if HELD_OUT.match(os.path.basename(path)):
            continue
        for line in open(path, encoding="utf-8"):
            level, _, text = line.rstrip("\n").partition("\t")
            if level in LEVEL and text:
                lines.append((LEVEL[level], text))
    for path in sorted(glob.glob(os.path.join(root, "policies/*.toml"))):
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
        for test in data.get("test", []):
            if test.get("expect") in LEVEL and test.get("text"):
                lines.append((LEVEL[test["expect"]], test["text"]))
    return lines


def normal_forms(binary, root, texts):
    # One message per line: line breaks inside a test's text would split it.
    flat = "\n".join(" ".join(text.splitlines()) for text in texts) + "\n"
    out = subprocess.run(
        [binary, "policy", "normalize", "--policies", os.path.join(root, "policies")],
        input=flat, capture_output=True, text=True, check=True,
    ).stdout.split("\n")
    return out[: len(texts)]


def features(normal):
    words = [w for w in normal.split(" ") if any(c.isalnum() for c in w)]
    return words + [a + " " + b for a, b in zip(words, words[1:])]


def fit(matrix, labels):
    urgent = LogisticRegression(C=C, max_iter=3000).fit(matrix, (labels >= 1).astype(int))
    emergency = LogisticRegression(C=C, max_iter=3000).fit(matrix, (labels == 2).astype(int))
    return urgent, emergency


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    data = labelled_lines(root)
    labels = np.array([level for level, _ in data])
    normals = normal_forms(binary, root, [text for _, text in data])
    vectorizer = CountVectorizer(
        analyzer=features, min_df=2, binary=True, lowercase=False
    )
    matrix = vectorizer.fit_transform(normals)
    print(f"{len(data)} labelled messages, {matrix.shape[1]} features", file=sys.stderr)

    if "--cv" in sys.argv:
        folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=17)
        p_urgent = np.zeros(len(data))
        p_emergency = np.zeros(len(data))
        shift_u = prior_shift(labels, lambda l: l >= 1, PRIOR_URGENT)
        shift_e = prior_shift(labels, lambda l: l == 2, PRIOR_EMERGENCY)
        for train, test in folds.split(matrix, labels):
            urgent, emergency = fit(matrix[train], labels[train])
            p_urgent[test] = 1 / (1 + np.exp(-(urgent.decision_function(matrix[test]) + shift_u)))
            p_emergency[test] = 1 / (
                1 + np.exp(-(emergency.decision_function(matrix[test]) + shift_e))
            )
        print("net alone, 5-fold: threshold, emergencies caught, routine raised")
        for threshold in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
            caught = (p_emergency[labels == 2] >= threshold).mean()
            urgent_caught = (p_urgent[labels >= 1] >= threshold).mean()
            raised_e = (p_emergency[labels == 0] >= threshold).mean()
            raised = (p_urgent[labels == 0] >= threshold).mean()
            print(
                f"  {threshold:.1f}  emergency: {caught:6.1%} caught, {raised_e:5.1%} of routine"
                f"   urgent+: {urgent_caught:6.1%} caught, {raised:5.1%} of routine"
            )
        return

    urgent, emergency = fit(matrix, labels)
    names = vectorizer.get_feature_names_out()
    rows = []
    for index, name in enumerate(names):
        pair = (urgent.coef_[0][index], emergency.coef_[0][index])
        if max(abs(pair[0]), abs(pair[1])) >= KEEP:
            rows.append(f"{name}\t{pair[0]:.4f}\t{pair[1]:.4f}")
    weights_path = os.path.join(root, "policies/safety_net_weights.tsv")
    with open(weights_path, "w", encoding="utf-8") as out:
        out.write(
            "# Written by scripts/train_safety_net.py; do not edit by hand.\n"
            "# words<TAB>weight for urgent or higher<TAB>weight for emergency\n"
        )
        out.write("\n".join(sorted(rows)) + "\n")
    settings_path = os.path.join(root, "policies/safety_net.toml")
    settings = open(settings_path, encoding="utf-8").read()
    bias_urgent = urgent.intercept_[0] + prior_shift(labels, lambda l: l >= 1, PRIOR_URGENT)
    bias_emergency = emergency.intercept_[0] + prior_shift(
        labels, lambda l: l == 2, PRIOR_EMERGENCY
    )
    settings = re.sub(r"(?m)^bias_urgent = .*$", f"bias_urgent = {bias_urgent:.4f}", settings)
    settings = re.sub(
        r"(?m)^bias_emergency = .*$", f"bias_emergency = {bias_emergency:.4f}", settings
    )
    open(settings_path, "w", encoding="utf-8").write(settings)
    print(f"wrote {len(rows)} features to {weights_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
