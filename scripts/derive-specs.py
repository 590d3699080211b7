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
The two Azure copies are derived from Microsoft's official Python clients
pinned in scripts/requirements-test.txt instead (see AZURE below).
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


def discovery(file: str, methods: list[str], kept: str):
    """A Google discovery document shipped in google-api-python-client, as
    the OpenAPI 3.0 shape the fakes' validator reads: each kept method
    (its dotted resource path and name, less the API's prefix) becomes an
    operation (its discovery id as operationId, its `flatPath` as the
    path), its request and response schemas component references, and the
    fields a method's annotations require of its request the operation's
    `required`."""
    def make() -> dict:
        src, version = pypi_file("googleapiclient", "google-api-python-client",
                                 f"discovery_cache/documents/{file}")
        doc = json.loads(src.read_text(encoding="utf-8"))
        schemas = doc["schemas"]
        shared = {n: discovery_param(n, p) for n, p in doc["parameters"].items()}

        def method(key: str) -> dict:
            *chain, name = key.split(".")
            node = doc
            for r in chain:
                node = node["resources"][r]
            return node["methods"][name]

        # An API whose methods carry its version in their paths (servicePath
        # empty, `flatPath` "v1/...") is served under that version, so the
        # document's server URL names it and its paths do not.
        server = doc["rootUrl"] + doc["servicePath"]
        prefix = ""
        if not doc["servicePath"] and all(
                method(k)["flatPath"].startswith(doc["version"] + "/") for k in methods):
            prefix = doc["version"] + "/"
            server += doc["version"]
        paths: dict = {}
        for key in methods:
            m = method(key)
            # `flatPath` names its own path variables where `path` has one
            # that spans segments (`v1/{+parent}/skus` is
            # `v1/services/{servicesId}/skus`): the flat ones are declared,
            # as strings, in place of the spanning one.
            flat = re.findall(r"{(\w+)}", m["flatPath"])
            declared = m.get("parameters", {})
            params = [discovery_param(n, p) for n, p in sorted(declared.items())
                      if p["location"] != "path" or n in flat]
            params += [{"name": v, "in": "path", "required": True, "schema": {"type": "string"}}
                       for v in flat if v not in declared]
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
            path = "/" + m["flatPath"][len(prefix):]
            paths.setdefault(path, {})[m["httpMethod"].lower()] = op
        out = {
            "openapi": "3.0.3",
            "info": {"title": doc["title"],
                     "version": f"{doc['version']} revision {doc['revision']}"},
            "servers": [{"url": server}],
            "paths": paths,
            "components": {"schemas": {n: discovery_schema(s) for n, s in schemas.items()}},
        }
        out = prune(out, [method(k)["id"] for k in methods])
        out["x-parasol-derived"] = {
            "from": f"pypi:google-api-python-client=={version} "
                    f"googleapiclient/discovery_cache/documents/{file}",
            "version": out["info"]["version"],
            "sha256": {file: sha256(src)},
            "by": "scripts/derive-specs.py",
            "kept": kept,
        }
        return out
    return make


gcp = discovery(
    "compute.v1.json", GCP_METHODS,
    "the methods the gcp adapter calls, as OpenAPI 3.0 operations; schemas with "
    "names, types, formats, enums, patterns, defaults, and the fields each method "
    "requires; objects closed to unknown fields; no descriptions")

# Cloud Billing Catalog methods the gcp adapter calls for prices.
GCP_BILLING_METHODS = ["services.skus.list"]

gcp_billing = discovery(
    "cloudbilling.v1.json", GCP_BILLING_METHODS,
    "the Cloud Billing Catalog method the gcp adapter reads prices with, as an "
    "OpenAPI 3.0 operation; schemas with names, types and formats; objects closed "
    "to unknown fields; no descriptions")


# --- Azure: derived from Microsoft's official Python clients -------------
#
# Microsoft's REST API specification (Azure/azure-rest-api-specs) is over a
# gigabyte and split over hundreds of files that refer to one another; the
# official management clients on PyPI are generated from it and carry the
# same facts in a form a program reads: each operation's method, URL
# template, api-version and query parameters (the `build_*_request`
# functions), its success statuses and models, and each model's wire names,
# types, required fields and visibility. The copies below are derived from
# the clients pinned in scripts/requirements-test.txt, installed in the
# test venv, so CI re-derives them with no network.

AZURE = {
    "azure-compute.openapi.json": ("azure-mgmt-compute", "azure.mgmt.compute", [
        # (operations class, build function stem, method name, body model)
        ("VirtualMachinesOperations", "virtual_machines", "create_or_update", "VirtualMachine"),
        ("VirtualMachinesOperations", "virtual_machines", "get", None),
        ("VirtualMachinesOperations", "virtual_machines", "delete", None),
        ("VirtualMachinesOperations", "virtual_machines", "restart", None),
        ("VirtualMachinesOperations", "virtual_machines", "list_all", None),
        ("VirtualMachinesOperations", "virtual_machines", "instance_view", None),
        ("DisksOperations", "disks", "create_or_update", "Disk"),
        ("DisksOperations", "disks", "get", None),
        ("DisksOperations", "disks", "delete", None),
        ("DisksOperations", "disks", "list", None),
        ("ResourceSkusOperations", "resource_skus", "list", None),
    ]),
    "azure-network.openapi.json": ("azure-mgmt-network", "azure.mgmt.network", [
        ("PublicIPAddressesOperations", "public_ip_addresses", "create_or_update", "PublicIPAddress"),
        ("PublicIPAddressesOperations", "public_ip_addresses", "get", None),
        ("PublicIPAddressesOperations", "public_ip_addresses", "delete", None),
        ("PublicIPAddressesOperations", "public_ip_addresses", "list_all", None),
        ("NetworkInterfacesOperations", "network_interfaces", "create_or_update", "NetworkInterface"),
        ("NetworkInterfacesOperations", "network_interfaces", "get", None),
        ("NetworkInterfacesOperations", "network_interfaces", "delete", None),
        ("NetworkInterfacesOperations", "network_interfaces", "list_all", None),
        ("VirtualNetworksOperations", "virtual_networks", "create_or_update", "VirtualNetwork"),
        ("VirtualNetworksOperations", "virtual_networks", "get", None),
        ("NetworkSecurityGroupsOperations", "network_security_groups", "create_or_update",
         "NetworkSecurityGroup"),
        ("NetworkSecurityGroupsOperations", "network_security_groups", "get", None),
    ]),
}


def _block(src: str, start: re.Pattern, indent: str) -> str:
    """The text from the last line `start` matches (an overloaded method's
    implementation follows its stubs) up to the next definition at `indent`
    or less."""
    found = list(start.finditer(src))
    m = found[-1] if found else None
    if not m:
        raise SystemExit(f"derive-specs: {start.pattern} not in the client")
    end = re.compile(rf"^(?:{indent})?(?:def|class) ", re.M)
    nxt = end.search(src, m.end())
    return src[m.start(): nxt.start() if nxt else len(src)]


class AzureModels:
    """JSON schemas of a generated client's models, as components."""

    def __init__(self, models_mod):
        import typing
        self.typing = typing
        self.mod = models_mod
        self.schemas: dict[str, dict] = {}

    def ref(self, cls) -> dict:
        name = cls.__name__
        if name not in self.schemas:
            self.schemas[name] = {}
            self.schemas[name] = self.model(cls)
        return {"$ref": f"#/components/schemas/{name}"}

    def model(self, cls) -> dict:
        import sys as _sys
        cls()  # the client computes its field table on first construction
        ns = {**vars(_sys.modules[cls.__module__]), "_models": self.mod}
        hints = self.typing.get_type_hints(cls, ns)
        props, required = {}, []
        for attr, rf in sorted(cls._attr_to_rest_field.items(), key=lambda kv: kv[1]._rest_name):
            tp = hints.get(attr)
            optional = tp is None or type(None) in self.typing.get_args(tp)
            s = self.of(tp)
            vis = rf._visibility
            if vis == ["read"]:
                s = {**s, "readOnly": True}
            props[rf._rest_name] = s
            if not optional and vis != ["read"]:
                required.append(rf._rest_name)
        out = {"type": "object", "properties": props, "additionalProperties": False}
        if required:
            out["required"] = sorted(required)
        return out

    def of(self, tp) -> dict:
        import datetime
        import enum
        t = self.typing
        if tp is None or tp is t.Any:
            return {}
        origin, args = t.get_origin(tp), t.get_args(tp)
        if origin is t.Union or type(tp).__name__ == "UnionType":
            rest = [a for a in args if a is not type(None)]
            # `Union[str, SomeEnum]` is an open enum: any string.
            if all(a is str or (isinstance(a, type) and issubclass(a, enum.Enum)) for a in rest):
                closed = [a for a in rest if a is not str]
                if len(closed) == len(rest) == 1:
                    return {"type": "string", "enum": sorted(m.value for m in closed[0])}
                return {"type": "string"}
            if len(rest) == 1:
                return self.of(rest[0])
            return {"anyOf": [self.of(a) for a in rest]}
        if origin is list:
            return {"type": "array", "items": self.of(args[0])}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.of(args[1])}
        if tp is str:
            return {"type": "string"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp in (datetime.datetime,):
            return {"type": "string", "format": "date-time"}
        if tp in (datetime.timedelta, datetime.date, datetime.time, bytes):
            return {"type": "string"}
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return {"type": "string", "enum": sorted(m.value for m in tp)}
        if isinstance(tp, type) and any(b.__name__ == "Model" for b in tp.__mro__):
            return self.ref(tp)
        raise SystemExit(f"derive-specs: no schema for {tp!r}")


def azure(file: str):
    def make() -> dict:
        import importlib
        import importlib.metadata as md
        dist, pkg, ops = AZURE[file]
        models = importlib.import_module(pkg + ".models")
        opmod = importlib.import_module(pkg + ".operations._operations")
        src_path = Path(opmod.__file__)
        src = src_path.read_text(encoding="utf-8")
        schemas = AzureModels(models)
        paths: dict = {}
        error = schemas.ref(models.CloudError)
        for cls_name, stem, name, body in ops:
            build = _block(src, re.compile(rf"^def build_{stem}_{name}_request\(", re.M), "")
            url = re.search(r'_url = "([^"]+)"', build).group(1)
            method = re.search(r'method="(\w+)"', build).group(1).lower()
            params = [{"name": "api-version", "in": "query", "required": True,
                       "schema": {"type": "string", "enum": [
                           re.search(r'"api-version", "([^"]+)"', build).group(1)]}}]
            for qname, qtype in re.findall(
                    r'_params\["([^"]+)"\] = _SERIALIZER\.query\(\s*"\w+",\s*\w+,\s*"(\w+)"', build):
                if qname == "api-version":
                    continue
                params.append({"name": qname, "in": "query", "required": False,
                               "schema": {"type": {"str": "string", "bool": "boolean",
                                                   "int": "integer"}[qtype]}})
            for pname in re.findall(r"\{(\w+)\}", url):
                params.append({"name": pname, "in": "path", "required": True,
                               "schema": {"type": "string"}})
            klass = _block(src, re.compile(rf"^class {cls_name}\b", re.M), "")
            # A long-running operation's first answer is its `_initial` call's.
            try:
                meth = _block(klass, re.compile(rf"^    def _{name}_initial\(", re.M), "    ")
            except SystemExit:
                meth = _block(klass, re.compile(rf"^    def {name}\(", re.M), "    ")
            statuses = re.search(r"status_code not in \[([\d, ]+)\]", meth).group(1)
            returns = None
            if name.startswith("list"):
                m = re.search(r"_deserialize\(\s*[Ll]ist\[_models\.(\w+)\]", meth)
                item = schemas.ref(getattr(models, m.group(1)))
                returns = {"type": "object", "properties": {
                    "value": {"type": "array", "items": item},
                    "nextLink": {"type": "string"}}, "required": ["value"]}
            else:
                outer = _block(klass, re.compile(rf"^    def (?:begin_)?{name}\(", re.M), "    ")
                m = re.search(r"(?<!failsafe)_deserialize\(\s*_models\.(\w+)", meth) or \
                    re.search(r"(?<!failsafe)_deserialize\(\s*_models\.(\w+)", outer)
                if m:
                    returns = schemas.ref(getattr(models, m.group(1)))
            responses = {}
            for code in (s.strip() for s in statuses.split(",")):
                r = {"description": ""}
                # An accepted long-running call, or a delete of nothing,
                # answers no body.
                if returns is not None and code in ("200", "201"):
                    r["content"] = {"application/json": {"schema": returns}}
                responses[code] = r
            responses["default"] = {"description": "",
                                    "content": {"application/json": {"schema": error}}}
            op = {"operationId": f"{cls_name.removesuffix('Operations')}_{name}",
                  "parameters": params, "responses": responses}
            if body:
                op["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": schemas.ref(getattr(models, body))}}}
            paths.setdefault(url, {})[method] = op
        version = md.version(dist)
        files = [Path(models.__file__).parent / "_models.py", src_path]
        return {
            "openapi": "3.0.3",
            "info": {"title": dist, "version": version},
            "servers": [{"url": "https://management.azure.com"}],
            "paths": paths,
            "components": {"schemas": dict(sorted(schemas.schemas.items()))},
            "x-parasol-derived": {
                "from": f"PyPI {dist}=={version} (generated from Azure/azure-rest-api-specs)",
                "version": version,
                "sha256": {f"{dist}/{f.parent.name}/{f.name}": sha256(f) for f in files},
                "by": "scripts/derive-specs.py",
                "kept": "the operations Parasol calls: method, path, api-version, query "
                        "parameters, success statuses; models' wire names, types, required "
                        "fields, read-only fields and closed enums; no documentation",
            },
        }
    return make


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
    "gcp-billing.openapi.json": gcp_billing,
    **{f: azure(f) for f in AZURE},
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
