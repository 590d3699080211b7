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
import re
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


class Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2's booleans: only true and false. PyYAML follows YAML 1.1,
    which also reads yes/no/on/off as booleans, so DigitalOcean's droplet
    status enum value `off` would become `false`."""


Yaml12Loader.yaml_implicit_resolvers = {
    ch: [r for r in rs if r[0] != "tag:yaml.org,2002:bool"]
    for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load(path: Path):
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    return yaml.load(text, Loader=Yaml12Loader)  # noqa: S506 (a safe loader)


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


# The operations of each provider document that Parasol's adapters call or
# its fakes serve (specs/SOURCES.md's "our operations", plus volumes): a copy
# keeps these and the components they reach, nothing else.
OPERATIONS = {
    "digitalocean": [
        "droplets_list", "droplets_create", "droplets_get", "droplets_destroy",
        "droplets_destroy_byTag", "dropletActions_post", "dropletActions_get",
        "sizes_list", "regions_list", "images_list",
        "sshKeys_list", "sshKeys_create", "sshKeys_get", "sshKeys_update", "sshKeys_delete",
        "volumes_list", "volumes_create", "volumes_get", "volumes_delete",
        "volumes_delete_byName", "volumeActions_post", "volumeActions_post_byId",
        "volumeActions_get",
    ],
    "runpod-v1": [
        "ListPods", "CreatePod", "GetPod", "UpdatePod", "DeletePod", "StartPod", "StopPod",
        "ResetPod", "RestartPod", "ListNetworkVolumes", "CreateNetworkVolume",
        "GetNetworkVolume", "UpdateNetworkVolume", "DeleteNetworkVolume", "PodBilling",
    ],
    "runpod-v2": [
        "listPods", "createPod", "getPod", "updatePod", "deletePod", "podAction", "getPodLogs",
        "listGpuTypes", "getGpuType", "listCpuTypes", "listDataCenters", "getDataCenter",
        "getSshKeys", "updateSshKeys", "listNetworkVolumes", "createNetworkVolume",
        "getNetworkVolume", "updateNetworkVolume", "deleteNetworkVolume", "listPodBilling",
        "listClusters", "createCluster", "getCluster", "deleteCluster",
    ],
    "lambda": [
        "listInstances", "getInstance", "postInstance", "launchInstance", "restartInstance",
        "terminateInstance", "listInstanceTypes", "listSSHKeys", "addSSHKey", "deleteSSHKey",
        "listFilesystems", "createFilesystem", "filesystemDelete", "listImages",
        "firewallRulesList", "firewallRulesSet",
    ],
    "hyperstack": [
        "List_VMs", "Create_VMs", "Get_VM", "Delete_VM", "Start_VM", "Stop_VM",
        "Hard_reboot_VM", "Hibernate_VM", "Attach_volumes_to_VM", "Detach_volumes_from_VM",
        "List_Flavors", "Get_GPU_stock", "Get_pricebook", "List_Regions", "List_environments",
        "Create_environment", "List_Images", "List_key_pairs", "Import_key_pair",
        "Delete_key_pair", "List_volumes", "Create_volume", "Get_Volume", "Delete_volume",
        "Update_volume", "List_volume_types",
    ],
    "vastai": [
        "searchOffers", "createInstance", "showInstances", "showInstance", "manageInstance",
        "destroyInstance", "rebootInstance", "changeBid", "createSshKey", "getSshKeysUser",
        "updateSshKey", "deleteSshKey", "attachSshKey", "detachSshKey", "searchVolumes",
        "rentVolume", "listVolumes", "deleteVolume", "showUser",
    ],
}

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def refs_in(node, out: set[str]) -> set[str]:
    """Every local `$ref` (and discriminator mapping target) under node."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                out.add(v)
            elif k == "mapping" and isinstance(v, dict):
                out.update(x for x in v.values() if isinstance(x, str) and x.startswith("#/"))
            else:
                refs_in(v, out)
    elif isinstance(node, list):
        for v in node:
            refs_in(v, out)
    return out


def pointer(doc, ref: str):
    node = doc
    for part in ref.lstrip("#/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def prune(doc: dict, keep: list[str]) -> dict:
    """The document with only the operations named in `keep` (by
    operationId) and the components they reach. Fails if an operation is
    missing, so a renamed one upstream is noticed, not silently dropped."""
    paths, found = {}, set()
    for path, item in doc.get("paths", {}).items():
        ops = {m: op for m, op in item.items()
               if m in METHODS and op.get("operationId") in keep}
        if ops:
            found.update(op["operationId"] for op in ops.values())
            rest = {k: v for k, v in item.items() if k not in METHODS}
            paths[path] = {**rest, **ops}
    missing = [o for o in keep if o not in found]
    if missing:
        raise SystemExit(f"derive-specs: operations not in the document: {missing}")
    doc = {**doc, "paths": paths}
    doc.pop("tags", None)
    doc.pop("webhooks", None)
    # The closure of components reachable from the kept paths (and security).
    wanted: set[str] = set()
    todo = refs_in(paths, set())
    while todo:
        ref = todo.pop()
        if not ref.startswith("#/components/") or ref in wanted:
            continue
        wanted.add(ref)
        refs_in(pointer(doc, ref), todo)
    comps = {}
    for kind, entries in doc.get("components", {}).items():
        if kind == "securitySchemes":
            comps[kind] = entries
            continue
        kept = {n: v for n, v in entries.items() if f"#/components/{kind}/{n}" in wanted}
        if kept:
            comps[kind] = kept
    doc["components"] = comps
    return doc


# Keywords under which a schema (or a map or list of them) stands.
SCHEMA_ONE = {"schema", "items", "additionalProperties", "not", "contains",
              "propertyNames", "additionalItems", "unevaluatedProperties", "if", "then", "else"}
SCHEMA_LIST = {"allOf", "anyOf", "oneOf", "prefixItems"}
SCHEMA_MAP = {"properties", "patternProperties", "$defs", "definitions"}


class Bundler:
    """Bundles a document split over files with relative `$ref`s into one:
    each schema a file refers to becomes a component schema (so a recursive
    one stays finite), everything else (parameters, responses, headers,
    operations) is inlined. Prose is stripped as each file part is read, so
    refs to examples and code samples are never followed."""

    def __init__(self, root: Path):
        self.root = root
        self.files: dict[Path, object] = {}
        self.names: dict[tuple[Path, str], str] = {}
        self.schemas: dict[str, object] = {}

    def read(self, path: Path):
        path = path.resolve()
        if path not in self.files:
            self.files[path] = load(path)
        return self.files[path]

    def target(self, ref: str, base: Path) -> tuple[Path, str]:
        file, _, frag = ref.partition("#")
        path = (base.parent / file).resolve() if file else base
        return path, frag

    def node(self, path: Path, frag: str):
        node = self.read(path)
        return pointer(node, frag) if frag.strip("/") else node

    def schema_ref(self, ref: str, base: Path) -> str:
        key = self.target(ref, base)
        if key not in self.names:
            path, frag = key
            stem = frag.strip("/").split("/")[-1] if frag.strip("/") else path.stem
            name, n = stem, 1
            taken = set(self.names.values())
            while name in taken:
                n += 1
                name = f"{path.parent.name}_{stem}" if n == 2 else f"{stem}_{n}"
            self.names[key] = name
            self.schemas[name] = None
            self.schemas[name] = self.walk(strip(self.node(*key)), path, "schema")
        return f"#/components/schemas/{self.names[key]}"

    def walk(self, node, base: Path, ctx: str):
        """`ctx` is "schema" where node is a schema, else "other"."""
        if isinstance(node, list):
            return [self.walk(v, base, ctx) for v in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#/components/"):
            if ctx == "schema":
                return {**{k: v for k, v in node.items() if k != "$ref"},
                        "$ref": self.schema_ref(ref, base)}
            path, frag = self.target(ref, base)
            return self.walk(strip(self.node(path, frag)), path, ctx)
        out = {}
        for k, v in node.items():
            if ctx == "schema" and k in SCHEMA_MAP and isinstance(v, dict):
                out[k] = {n: self.walk(s, base, "schema") for n, s in v.items()}
            elif ctx == "schema" and k in SCHEMA_LIST and isinstance(v, list):
                out[k] = [self.walk(s, base, "schema") for s in v]
            elif k == "mapping" and ctx == "schema" and isinstance(v, dict):
                out[k] = {n: self.schema_ref(r, base) for n, r in v.items()}
            elif k in SCHEMA_ONE and isinstance(v, dict):
                out[k] = self.walk(v, base, "schema")
            elif ctx == "schema" and k in LITERAL:
                out[k] = v
            else:
                out[k] = self.walk(v, base, "other")
        return out


def digitalocean() -> dict:
    src = SHARED / "specs" / "digitalocean" / "specification" / "DigitalOcean-public.v2.yaml"
    b = Bundler(src)
    doc = b.read(src)
    keep = OPERATIONS["digitalocean"]
    paths = {}
    for path, item in doc["paths"].items():
        ops = {}
        for m, op in item.items():
            if m not in METHODS:
                continue
            # Read only the operations kept, so the recorded files (and
            # their hashes) are the ones the copy depends on.
            path_, frag = b.target(op["$ref"], src) if "$ref" in op else (src, "")
            raw = pointer(load(path_), frag) if frag.strip("/") else load(path_)
            if raw.get("operationId") in keep:
                ops[m] = b.walk(op, src, "other")
        if ops:
            paths[path] = ops
    bundled = {k: v for k, v in doc.items() if k not in ("paths", "components")}
    bundled["paths"] = paths
    bundled["components"] = {**doc.get("components", {}), "schemas": b.schemas}
    bundled = prune(bundled, keep)
    files = sorted(b.files)
    return derived(bundled, src, files)


def provider(name: str, rel: str):
    def make() -> dict:
        src = SHARED / "specs" / rel
        return derived(prune(load(src), OPERATIONS[name]), src, [src])
    return make


# Compute Engine methods (discovery ids, less the `compute.` prefix) that
# the gcp adapter calls and its fake serves (google-api-python-client's test
# calls a subset of them).
GCP_METHODS = [
    "instances.insert", "instances.get", "instances.aggregatedList", "instances.delete",
    "instances.reset",
    "disks.insert", "disks.get", "disks.aggregatedList", "disks.delete",
    "zoneOperations.get", "globalOperations.aggregatedList",
    "machineTypes.aggregatedList", "acceleratorTypes.aggregatedList",
    "firewalls.get", "firewalls.insert",
]
# Discovery keys that are prose or client hints, not wire facts.
DISCOVERY_PROSE = {"description", "enumDescriptions", "enumDeprecated", "annotations",
                   "id", "deprecated"}


def pypi_file(package: str, dist: str, rel: str) -> tuple[Path, str]:
    """A file shipped inside an installed PyPI package (the test venv's), and
    the package's pinned version. CI has the venv (scripts/setup.sh
    installs scripts/requirements-test.txt), so this re-derives there with
    no network."""
    from importlib import metadata, util
    spec = util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"derive-specs: {dist} is not installed in this Python "
                         f"({sys.executable}); run scripts/setup.sh, or use target/test-venv/bin/python")
    return Path(list(spec.submodule_search_locations)[0]) / rel, metadata.version(dist)


def discovery_schema(node):
    """A discovery-format schema as an OpenAPI 3.0 one: `$ref` names become
    component references, prose goes, and an object with named properties
    is closed (`additionalProperties: false`): Compute Engine refuses a
    request with a field it does not know ("Unknown name"), and the fake
    may answer none either."""
    if isinstance(node, list):
        return [discovery_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k in DISCOVERY_PROSE:
            continue
        if k == "$ref":
            out[k] = f"#/components/schemas/{v}"
        elif k == "properties":
            out[k] = {n: discovery_schema(x) for n, x in v.items()}
        elif k in LITERAL:
            out[k] = copy.deepcopy(v)
        elif k == "type" and v == "any":
            # Discovery's "any" is JSON Schema's absence of a type.
            continue
        elif k in ("minimum", "maximum") and isinstance(v, str):
            out[k] = float(v) if "." in v else int(v)
        else:
            out[k] = discovery_schema(v)
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def discovery_param(name: str, p: dict) -> dict:
    schema = {k: copy.deepcopy(v) for k, v in p.items()
              if k in ("type", "format", "enum", "pattern", "minimum", "maximum", "default")}
    # Discovery writes bounds as strings ("minimum": "0"); JSON Schema's
    # are numbers.
    for bound in ("minimum", "maximum"):
        if isinstance(schema.get(bound), str):
            schema[bound] = float(schema[bound]) if "." in schema[bound] else int(schema[bound])
    if p.get("repeated"):
        schema = {"type": "array", "items": schema}
    return {"name": name, "in": p["location"], "required": bool(p.get("required")),
            "schema": schema}


def gcp() -> dict:
    """Compute Engine's discovery document, as the OpenAPI 3.0 shape the
    fakes' validator reads: each kept method becomes an operation (its
    discovery id as operationId, its `flatPath` as the path), its request
    and response schemas component references, and the fields a method's
    annotations require of its request the operation's `required`."""
    src, version = pypi_file("googleapiclient", "google-api-python-client",
                             "discovery_cache/documents/compute.v1.json")
    doc = json.loads(src.read_text(encoding="utf-8"))
    schemas = doc["schemas"]
    shared = {n: discovery_param(n, p) for n, p in doc["parameters"].items()}
    paths: dict = {}
    found = set()
    for key in GCP_METHODS:
        resource, method = key.split(".")
        m = doc["resources"][resource]["methods"][method]
        found.add(key)
        params = [discovery_param(n, p) for n, p in sorted(m.get("parameters", {}).items())]
        params += [shared[n] for n in sorted(shared)]
        op = {"operationId": m["id"], "parameters": params}
        if "request" in m:
            name = m["request"]["$ref"]
            body = {"$ref": f"#/components/schemas/{name}"}
            required = sorted(n for n, p in schemas[name].get("properties", {}).items()
                              if m["id"] in p.get("annotations", {}).get("required", []))
            if required:
                body = {"allOf": [body], "required": required}
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": body}}}
        resp = {"description": ""}
        if "response" in m:
            resp["content"] = {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{m['response']['$ref']}"}}}
        op["responses"] = {"200": resp}
        paths.setdefault("/" + m["flatPath"], {})[m["httpMethod"].lower()] = op
    missing = [k for k in GCP_METHODS if k not in found]
    if missing:
        raise SystemExit(f"derive-specs: methods not in compute.v1.json: {missing}")
    out = {
        "openapi": "3.0.3",
        "info": {"title": doc["title"], "version": f"{doc['version']} revision {doc['revision']}"},
        "servers": [{"url": doc["rootUrl"] + doc["servicePath"]}],
        "paths": paths,
        "components": {"schemas": {n: discovery_schema(s) for n, s in schemas.items()}},
    }
    out = prune(out, [doc["resources"][k.split(".")[0]]["methods"][k.split(".")[1]]["id"]
                      for k in GCP_METHODS])
    out["x-parasol-derived"] = {
        "from": f"pypi:google-api-python-client=={version} "
                "googleapiclient/discovery_cache/documents/compute.v1.json",
        "version": out["info"]["version"],
        "sha256": {"compute.v1.json": sha256(src)},
        "by": "scripts/derive-specs.py",
        "kept": "the methods the gcp adapter calls, as OpenAPI 3.0 operations; schemas with "
                "names, types, formats, enums, patterns, defaults, and the fields each method "
                "requires; objects closed to unknown fields; no descriptions",
    }
    return out


# The derived documents, by the file name they get under specs/.
DOCUMENTS = {
    "shadeform.openapi.json": shadeform,
    "digitalocean.openapi.json": digitalocean,
    "runpod-v1.openapi.json": provider("runpod-v1", "runpod/rest-v1.openapi.json"),
    "runpod-v2.openapi.json": provider("runpod-v2", "runpod/rest-v2.openapi.json"),
    "lambda.openapi.json": provider("lambda", "lambda/lambda-cloud-api-1.8.3.openapi.json"),
    "hyperstack.openapi.json":
        provider("hyperstack", "hyperstack/infrahub-api.sdk-go-v1.52.3.openapi.yaml"),
    "vastai.openapi.json": provider("vastai", "vastai/vast-api.openapi.yaml"),
    "gcp-compute.openapi.json": gcp,
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
