#!/usr/bin/env python3
"""Checks the Helm chart in helm/carebridge without helm or a cluster.

What it checks:
  1. Chart.yaml and values.yaml parse, and Chart.yaml has the fields Helm needs;
  2. values.yaml validates against values.schema.json (JSON Schema draft-07);
  3. every `.Values.a.b.c` path used in the templates exists in values.yaml;
  4. every template's `{{ }}` actions are closed, its if/range/with/define blocks balance,
     and every `include "name"` has a `define`;
  5. every manifest template names `apiVersion:` and `kind:`, and still parses as YAML once its
     actions are stripped (a crude render: action-only lines dropped, inline actions replaced);
  6. the server Deployment has what operations rely on (probes, preStop, enableServiceLinks off,
     no pod restart on policy changes), and every CAREBRIDGE_* variable it sets names a real
     setting in src/config.rs (the server refuses unknown keys at start-up);
  7. the shutdown budget: terminationGracePeriodSeconds exceeds preStop + grace + 3 s.

Needs PyYAML and jsonschema; installs them with pip when they are missing.
Exit status 0 when everything passed, 1 with a list of problems otherwise.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path


def ensure_modules() -> None:
    missing = []
    for module in ("yaml", "jsonschema"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if not missing:
        return
    print(f"check_helm: installing pyyaml and jsonschema (missing: {', '.join(missing)})")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "pyyaml", "jsonschema"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(
            "check_helm: FAILED: PyYAML and jsonschema are needed and "
            f"`{' '.join(command)}` failed:\n{result.stderr.strip()}\n"
            "Install them (pip install pyyaml jsonschema) and run again."
        )
    importlib.invalidate_caches()
    for module in missing:
        try:
            importlib.import_module(module)
        except ImportError as error:
            sys.exit(f"check_helm: FAILED: installed {module} but cannot import it: {error}")


ensure_modules()

import jsonschema  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "carebridge"
TEMPLATES = CHART / "templates"
CONFIG_RS = ROOT / "src" / "config.rs"

ACTION = re.compile(r"\{\{.*?\}\}", re.DOTALL)
COMMENT = re.compile(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", re.DOTALL)
VALUES_PATH = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
INCLUDE = re.compile(r"\b(?:include|template)\s+\"([^\"]+)\"")
DEFINE = re.compile(r"\{\{-?\s*define\s+\"([^\"]+)\"")
ENV_NAME = re.compile(r"name:\s*\"?(CAREBRIDGE_[A-Z0-9_]+)\"?")

problems: list[str] = []
passed: list[str] = []


def ok(message: str) -> None:
    passed.append(message)
    print(f"ok   {message}")


def fail(message: str) -> None:
    problems.append(message)
    print(f"FAIL {message}")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def load_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        fail(f"{rel(path)} does not parse: {error}")
        return None


def check_chart() -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    if chart is None:
        return
    if not isinstance(chart, dict):
        fail("Chart.yaml is not a mapping")
        return
    lacking = [key for key in ("apiVersion", "name", "version", "appVersion") if not chart.get(key)]
    if lacking:
        fail(f"Chart.yaml lacks {', '.join(lacking)}")
    elif chart["apiVersion"] != "v2":
        fail(f"Chart.yaml apiVersion is {chart['apiVersion']!r}, Helm 3 charts use v2")
    elif chart["name"] != CHART.name:
        fail(f"Chart.yaml name {chart['name']!r} differs from its directory {CHART.name!r}")
    else:
        ok(f"Chart.yaml parses ({chart['name']} {chart['version']}, app {chart['appVersion']})")


def check_values() -> dict | None:
    values = load_yaml(CHART / "values.yaml")
    if values is None:
        return None
    if not isinstance(values, dict):
        fail("values.yaml is not a mapping")
        return None
    ok(f"values.yaml parses ({len(values)} top-level keys)")
    try:
        schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        fail(f"values.schema.json does not parse: {error}")
        return values
    draft = schema.get("$schema", "")
    if "draft-07" not in draft:
        fail(f"values.schema.json declares {draft!r}, expected JSON Schema draft-07")
    try:
        jsonschema.Draft7Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        fail(f"values.schema.json is not a valid draft-07 schema: {error.message}")
        return values
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(values), key=lambda e: list(e.path)
    )
    if errors:
        for error in errors:
            where = ".".join(str(part) for part in error.path) or "(top level)"
            fail(f"values.yaml does not match values.schema.json at {where}: {error.message}")
    else:
        ok("values.yaml validates against values.schema.json (draft-07)")
    return values


def template_files() -> list[Path]:
    files = sorted(TEMPLATES.glob("*.yaml")) + sorted(TEMPLATES.glob("*.tpl"))
    files += sorted(TEMPLATES.glob("*.txt"))
    return files


def check_value_paths(values: dict, files: list[Path]) -> None:
    checked = 0
    before = len(problems)
    for path in files:
        text = path.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), start=1):
            for match in VALUES_PATH.finditer(line):
                checked += 1
                node: object = values
                walked = []
                for key in match.group(1).strip(".").split("."):
                    walked.append(key)
                    if not isinstance(node, dict) or key not in node:
                        fail(
                            f"{rel(path)}:{number}: .Values.{'.'.join(walked)} "
                            "is not in values.yaml"
                        )
                        break
                    node = node[key]
    if len(problems) == before:
        ok(f"{checked} .Values references in {len(files)} template files all exist in "
           "values.yaml")


def check_structure(files: list[Path]) -> dict[str, str]:
    """Balanced actions and blocks; returns the crude render of each manifest template."""
    defined: set[str] = set()
    included: list[tuple[Path, str]] = []
    rendered: dict[str, str] = {}
    before = len(problems)
    for path in files:
        text = path.read_text(encoding="utf-8")
        name = rel(path)
        if text.count("{{") != text.count("}}"):
            fail(f"{name}: {text.count('{{')} '{{{{' but {text.count('}}')} '}}}}'")
            continue
        stack: list[tuple[str, int]] = []
        broken = False
        for match in ACTION.finditer(text):
            body = match.group(0)[2:-2].strip().lstrip("-").rstrip("-").strip()
            line = text.count("\n", 0, match.start()) + 1
            if "{{" in body:
                fail(f"{name}:{line}: an action opens inside another action")
                broken = True
                break
            if body.startswith("/*"):
                continue
            word = body.split(None, 1)[0] if body else ""
            if word in ("if", "range", "with", "define", "block"):
                stack.append((word, line))
            elif word == "else":
                if not stack or stack[-1][0] not in ("if", "range", "with"):
                    fail(f"{name}:{line}: `else` outside an if/range/with block")
                    broken = True
                    break
            elif word == "end":
                if not stack:
                    fail(f"{name}:{line}: `end` without an open block")
                    broken = True
                    break
                stack.pop()
        if broken:
            continue
        if stack:
            word, line = stack[-1]
            fail(f"{name}:{line}: `{word}` block is never closed")
            continue
        defined.update(DEFINE.findall(text))
        included.extend((path, target) for target in INCLUDE.findall(text))
        if path.suffix == ".yaml":
            rendered[name] = crude_render(text)
    unknown = sorted({f"{rel(path)}: include \"{target}\"" for path, target in included
                      if target not in defined})
    for entry in unknown:
        fail(f"{entry} has no matching define")
    if len(problems) == before:
        ok(f"{len(files)} templates: actions closed, if/range/with/define blocks balanced, "
           f"{len(set(t for _, t in included))} included names all defined")
    return rendered


def crude_render(text: str) -> str:
    """Drops lines that are only actions and replaces inline actions by a placeholder."""
    text = COMMENT.sub("", text)
    lines = []
    for line in text.splitlines():
        if "{{" in line and not ACTION.sub("", line).strip():
            continue
        lines.append(ACTION.sub("TEMPLATED", line))
    return "\n".join(lines) + "\n"


def check_manifests(rendered: dict[str, str]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    before = len(problems)
    for name, text in rendered.items():
        source = (ROOT / name).read_text(encoding="utf-8")
        if not re.search(r"^apiVersion:", source, re.M) or not re.search(r"^kind:", source, re.M):
            fail(f"{name} lacks a top-level `apiVersion:` or `kind:`")
            continue
        try:
            documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
        except yaml.YAMLError as error:
            fail(f"{name} is not YAML once its actions are stripped (crude render): {error}")
            continue
        for document in documents:
            if not isinstance(document, dict) or not document.get("apiVersion") \
                    or not document.get("kind"):
                fail(f"{name}: a document without apiVersion and kind")
                continue
            kinds.setdefault(document["kind"], []).append(document)
    found = ", ".join(f"{kind} x{len(docs)}" if len(docs) > 1 else kind
                      for kind, docs in sorted(kinds.items()))
    if len(problems) == before:
        ok(f"{len(rendered)} manifest templates have apiVersion/kind and parse as YAML "
           f"after stripping actions ({found})")
    return kinds


def config_fields() -> dict[str, set[str]] | None:
    """Section -> field names of src/config.rs, with "" for the top level."""
    # Sections may be defined beside the module they configure (`crate::auth::AuthSettings`),
    # so every source file is read for struct definitions.
    try:
        sources = [CONFIG_RS.read_text(encoding="utf-8")] + [
            path.read_text(encoding="utf-8")
            for path in sorted((ROOT / "src").rglob("*.rs"))
            if path != CONFIG_RS
        ]
    except OSError:
        return None
    structs: dict[str, list[tuple[str, str]]] = {}
    for source in sources:
        for match in re.finditer(r"pub struct (\w+)\s*\{(.*?)\n\}", source, re.DOTALL):
            structs.setdefault(
                match.group(1), re.findall(r"pub (\w+):\s*([\w:<>]+)", match.group(2))
            )
    if "Settings" not in structs:
        return None
    sections: dict[str, set[str]] = {"": set()}
    for field, kind in structs["Settings"]:
        sections[""].add(field)
        kind = kind.rsplit("::", 1)[-1]
        if kind in structs:
            sections[field] = {name for name, _ in structs[kind]}
    return sections


def env_key_problem(name: str, sections: dict[str, set[str]]) -> str | None:
    parts = name[len("CAREBRIDGE_"):].lower().split("__")
    if parts[0] not in sections[""]:
        return f"`{parts[0]}` is not a setting"
    if len(parts) == 1:
        return None
    if parts[0] not in sections or len(parts) != 2:
        return f"`{'.'.join(parts)}` is not a setting"
    if parts[1] not in sections[parts[0]]:
        return f"`{parts[0]}.{parts[1]}` is not a setting"
    return None


def check_deployment(kinds: dict[str, list[dict]], values: dict | None) -> None:
    deployments = kinds.get("Deployment", [])
    if len(deployments) != 1:
        fail(f"expected one Deployment, found {len(deployments)}")
        return
    spec = deployments[0].get("spec", {}).get("template", {}).get("spec", {})
    containers = spec.get("containers") or []
    if not containers:
        fail("the Deployment has no containers")
        return
    container = containers[0]
    expectations = {
        "readiness probe GET /readyz":
            (container.get("readinessProbe") or {}).get("httpGet", {}).get("path") == "/readyz",
        "liveness probe GET /healthz":
            (container.get("livenessProbe") or {}).get("httpGet", {}).get("path") == "/healthz",
        "preStop sleep":
            "sleep" in json.dumps(((container.get("lifecycle") or {}).get("preStop") or {})),
        "enableServiceLinks: false (no CAREBRIDGE_*_SERVICE_HOST variables)":
            spec.get("enableServiceLinks") is False,
        "no checksum annotation (policy changes hot-reload, they do not restart pods)":
            "checksum/" not in (ROOT / "helm/carebridge/templates/deployment.yaml").read_text(),
    }
    for what, good in expectations.items():
        if good:
            ok(f"Deployment: {what}")
        else:
            fail(f"Deployment lacks {what}")

    template = (TEMPLATES / "deployment.yaml").read_text(encoding="utf-8")
    template += (TEMPLATES / "_helpers.tpl").read_text(encoding="utf-8")
    names = set(ENV_NAME.findall(template))
    for entry in (values or {}).get("extraEnv") or []:
        if isinstance(entry, dict) and str(entry.get("name", "")).startswith("CAREBRIDGE_"):
            names.add(entry["name"])
    required = {
        "CAREBRIDGE_SERVER__HOST", "CAREBRIDGE_STORE__BACKEND", "CAREBRIDGE_STORE__REDIS_URL",
        "CAREBRIDGE_LLM__PROVIDER", "CAREBRIDGE_LLM__BASE_URL", "CAREBRIDGE_LLM__MODEL",
        "CAREBRIDGE_REGION", "CAREBRIDGE_POLICIES__DIR", "CAREBRIDGE_ENVIRONMENT",
        "CAREBRIDGE_AUTH__ALGORITHM",
    }
    lacking = sorted(required - names)
    if lacking:
        fail(f"Deployment does not set {', '.join(lacking)}")
    if "CAREBRIDGE_AUTH__DEV_SECRET" in names:
        fail("Deployment sets CAREBRIDGE_AUTH__DEV_SECRET: production refuses development secrets")
    sections = config_fields()
    if sections is None:
        ok(f"Deployment sets {len(names)} CAREBRIDGE_* variables "
           "(src/config.rs not readable: names not checked)")
        return
    bad = [(name, env_key_problem(name, sections)) for name in sorted(names)]
    bad = [(name, why) for name, why in bad if why]
    for name, why in bad:
        fail(f"{name}: {why} in src/config.rs (the server would refuse to start)")
    if not bad and not lacking:
        ok(f"Deployment sets {len(names)} CAREBRIDGE_* variables, each a setting in src/config.rs")


def check_shutdown_budget(values: dict | None) -> None:
    if not values:
        return
    try:
        grace_ms = int(values["server"]["shutdownGraceMs"])
        pre_stop = int(values["lifecycle"]["preStopSleepSeconds"])
        period = int(values["terminationGracePeriodSeconds"])
    except (KeyError, TypeError, ValueError) as error:
        fail(f"shutdown budget: cannot read the values ({error})")
        return
    needed = pre_stop + -(-grace_ms // 1000) + 3
    if period > needed:
        ok(f"shutdown budget: terminationGracePeriodSeconds {period} > preStop {pre_stop} s "
           f"+ grace {grace_ms} ms + 3 s")
    else:
        fail(f"terminationGracePeriodSeconds {period} must exceed preStop {pre_stop} s + "
             f"grace {grace_ms} ms + 3 s = {needed} s")


def main() -> int:
    if not CHART.is_dir():
        print(f"check_helm: FAILED: no chart at {rel(CHART)}")
        return 1
    print(f"check_helm: checking {rel(CHART)} (without helm)")
    check_chart()
    values = check_values()
    files = template_files()
    if not files:
        fail(f"no templates in {rel(TEMPLATES)}")
    if values is not None:
        check_value_paths(values, files)
    rendered = check_structure(files)
    kinds = check_manifests(rendered)
    check_deployment(kinds, values)
    check_shutdown_budget(values)
    if problems:
        print(f"check_helm: FAILED: {len(problems)} problem(s), {len(passed)} check(s) passed")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print(f"check_helm: all {len(passed)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
