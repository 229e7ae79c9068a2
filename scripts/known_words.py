#!/usr/bin/env python3
"""Writes the `known` list of policies/spelling.toml: ordinary words of patient messages, which are
never read as a misspelling of a policy word (`calming` is not `calling`, `breeding` is not
`bleeding`).

    python3 scripts/known_words.py target/release/carebridge

The words are those of the development sets (policies/eval/dev*.tsv) and of the policy tests,
as the server reads them (`carebridge policy normalize`), of plain Latin letters and at least as
long as the shortest word `spelling.toml` reads, used at least twice: a typo is rarely typed the
same way twice. Held-out sets (blind*, heldout, fresh) are never read here: they stay a fair
measure of how misspellings are read. The rest of spelling.toml is kept as it is.
"""
import collections
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

MIN_USES = 2


def texts(root):
    for path in sorted(glob.glob(os.path.join(root, "policies/eval/dev*.tsv"))):
        for line in open(path, encoding="utf-8"):
            _, _, text = line.rstrip("\n").partition("\t")
            if text:
                yield text
    for path in sorted(glob.glob(os.path.join(root, "policies/*.toml"))):
        with open(path, "rb") as handle:
            for test in tomllib.load(handle).get("test", []):
                yield test["text"]


def policies_without_spelling(root, scratch):
    """A copy of the repository's policy directory in `scratch`, without spelling.toml (and
    without the labelled sets): words are read there as typed. Returns its path."""
    policies = os.path.join(scratch, "policies")
    shutil.copytree(
        os.path.join(root, "policies"),
        policies,
        ignore=shutil.ignore_patterns("eval", "spelling.toml"),
    )
    return policies


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spelling_path = os.path.join(root, "policies/spelling.toml")
    with open(spelling_path, "rb") as handle:
        min_length = tomllib.load(handle).get("min_length", 6)
    lines = [text.replace("\r", " ") for text in texts(root)]
    # Read without spelling.toml, so that each word is counted as typed, not as the policy word
    # it may be one slip away from.
    with tempfile.TemporaryDirectory() as scratch:
        policies = policies_without_spelling(root, scratch)
        normal = subprocess.run(
            [binary, "policy", "normalize", "--policies", policies],
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
        ).stdout.splitlines()
    uses = collections.Counter()
    for line in normal:
        for word in line.split():
            if len(word) >= min_length and re.fullmatch(r"[a-z]+", word):
                uses[word] += 1
    known = sorted(word for word, count in uses.items() if count >= MIN_USES)
    with open(spelling_path, encoding="utf-8") as handle:
        head = handle.read().split("known = [")[0]
    body = "".join(f'  "{word}",\n' for word in known)
    with open(spelling_path, "w", encoding="utf-8") as handle:
        handle.write(f"{head}known = [\n{body}]\n")
    print(f"{len(known)} known words written to {spelling_path}")


if __name__ == "__main__":
    main()
