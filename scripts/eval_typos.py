#!/usr/bin/env python3
"""Misspelt red flags: how many English emergencies of the development sets stay emergencies when
two of their words carry a slip of the keyboard, with `policies/spelling.toml` and without it.

    python3 scripts/eval_typos.py target/release/carebridge

Takes the English development emergencies (policies/eval/dev*.tsv, ASCII only) that the policies
decide as emergencies as written, and 2,000 of them at random (seed 11); in each, two words of five
letters or more get one slip each, not on the first or the last letter: two neighbours swapped, a
letter left out, a letter added, or a letter mistyped (the letter added or mistyped is any of a-z).
Each kind of slip is one run. Both readings use the same binary: without spelling.toml, the policy
directory is copied without it. Held-out sets are never read.
"""
import glob
import json
import os
import random
import subprocess
import sys
import tempfile

from known_words import policies_without_spelling

KINDS = ("swap", "drop", "add", "sub")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def levels(binary, root, texts, policies=None):
    command = [binary, "policy", "check"] + (["--policies", policies] if policies else [])
    out = subprocess.run(
        command, input="\n".join(texts) + "\n", capture_output=True, text=True, check=True, cwd=root
    ).stdout.splitlines()
    return [json.loads(line)["level"] for line in out]


def slip(text, kind, rng):
    words = text.split()
    long_words = [i for i, word in enumerate(words) if len(word) >= 5 and word.isalpha()]
    if not long_words:
        return None
    for i in rng.sample(long_words, min(2, len(long_words))):
        word = words[i]
        at = rng.randrange(1, len(word) - 1)
        if kind == "swap":
            word = word[:at] + word[at + 1] + word[at] + word[at + 2 :]
        elif kind == "drop":
            word = word[:at] + word[at + 1 :]
        elif kind == "add":
            word = word[:at] + rng.choice(LETTERS) + word[at:]
        else:
            word = word[:at] + rng.choice(LETTERS) + word[at + 1 :]
        words[i] = word
    return " ".join(words)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    texts = []
    for path in sorted(glob.glob(os.path.join(root, "policies/eval/dev*.tsv"))):
        for line in open(path, encoding="utf-8"):
            level, _, text = line.rstrip("\n").partition("\t")
            if level == "emergency" and text.isascii():
                texts.append(text)
    decided = levels(binary, root, texts)
    texts = [text for text, level in zip(texts, decided) if level == "emergency"]
    rng = random.Random(11)
    texts = rng.sample(texts, min(2000, len(texts)))
    with tempfile.TemporaryDirectory() as scratch:
        without = policies_without_spelling(root, scratch)
        print("slip   messages   emergency without -> with spelling.toml   routine without -> with")
        for kind in KINDS:
            slipped = [s for s in (slip(text, kind, rng) for text in texts) if s]
            before = levels(binary, root, slipped, without)
            after = levels(binary, root, slipped)
            share = lambda found, level: 100 * found.count(level) / len(found)
            print(
                f"{kind:6} {len(slipped):9}   {share(before, 'emergency'):5.1f}% -> {share(after, 'emergency'):5.1f}%"
                f"                   {share(before, 'routine'):4.1f}% -> {share(after, 'routine'):4.1f}%"
            )


if __name__ == "__main__":
    main()
