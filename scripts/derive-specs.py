#!/usr/bin/env python3
"""Derives the facts-only API documents in specs/ from the published ones.

Parasol's tests check its wire format against Shadeform's published
OpenAPI document, and its cloud fakes against each provider's. Those
documents are reference material kept outside the repository (the
developers' `../shared` folder); a clone must build and test without it.
So the repository carries derived copies that keep what a machine reads:
paths, methods, parameters, schemas, field names, types, formats, enums,
required lists, nullability, defaults, and drop what a person reads:
descriptions, summaries, examples, vendor extensions. Each copy records
the file it came from, that file's version and its SHA-256.

    python3 scripts/derive-specs.py            # rewrite specs/ from ../shared
    python3 scripts/derive-specs.py --check    # fail if specs/ is stale

`--check` is what .ci/run runs (CI always has ../shared beside the clone).
Needs PyYAML (in the test venv that scripts/setup.sh makes).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PARASOL_SHARED", ROOT.parent / "shared"))
OUT = ROOT / "specs"

# Keys whose value is prose wherever they stand as keywords (never inside a
# map of names such as `properties`, where `description` is a field).
PROSE = {"description", "summary", "example", "examples", "externalDocs",
         "termsOfService", "contact", "license", "x-codeSamples"}
# Maps whose keys are names chosen by the document, not keywords.
NAME_MAPS = {"properties", "paths", "schemas", "responses", "parameters",
             "securitySchemes", "headers", "content", "variables",
             "patternProperties", "definitions", "requestBodies", "links",
             "callbacks", "mapping", "encoding"}


LITERAL = {"default", "enum", "const"}


def strip(node, names_of: str | None = None):
    """The node without prose. `names_of` is set when the node is a map of
    names (the keyword it stands under), whose keys are all kept. OpenAPI
    requires `description` on a response: it stays, emptied."""
    if isinstance(node, list):
        return [strip(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if names_of is not None:
            out[k] = strip(v)
            if names_of == "responses" and isinstance(v, dict) and "$ref" not in v:
                out[k] = {"description": "", **out[k]}
        elif k in PROSE or (isinstance(k, str) and k.startswith("x-")):
            continue
        elif k in LITERAL:
            out[k] = copy.deepcopy(v)
        else:
            out[k] = strip(v, k if k in NAME_MAPS and isinstance(v, dict) else None)
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(path: Path):
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def derived(doc: dict, source: Path, files: list[Path]) -> dict:
    doc = strip(doc)
    info = doc.setdefault("info", {})
    info.setdefault("title", "")
    info.setdefault("version", "")
    rel = lambda p: "shared/" + str(p.relative_to(SHARED))  # noqa: E731
    doc["x-parasol-derived"] = {
        "from": rel(source),
        "version": str(info.get("version", "")),
        "sha256": {rel(f): sha256(f) for f in files},
        "by": "scripts/derive-specs.py",
        "kept": "paths, methods, parameters, schemas, names, types, formats, enums, "
                "required, nullability, defaults; no descriptions, summaries or examples",
    }
    return doc


def shadeform() -> dict:
    src = SHARED / "reference" / "shadeform-openapi.yaml"
    return derived(load(src), src, [src])


# The derived documents, by the file name they get under specs/.
DOCUMENTS = {
    "shadeform.openapi.json": shadeform,
}


def render(doc: dict) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="compare specs/ with a fresh derivation; change nothing")
    args = ap.parse_args()
    if not SHARED.is_dir():
        print(f"derive-specs: {SHARED} is missing; it holds the published documents",
              file=sys.stderr)
        return 2
    stale = []
    for name, make in DOCUMENTS.items():
        text = render(make())
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote specs/{name}")
    if stale:
        print("derive-specs: specs/ is stale against the published documents: "
              + ", ".join(stale)
              + "\n  run: python3 scripts/derive-specs.py  (and commit specs/)",
              file=sys.stderr)
        return 1
    if args.check:
        print(f"derive-specs: specs/ is current ({len(DOCUMENTS)} documents)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
