"""The checks of scripts/manifests-check.sh that need Python: strict schema validation, the RBAC
wildcard rule, the object-by-object comparison of two renderings, and the vendored CRDs'
checksums. Run with the virtualenv the shell script installs (kubernetes-validate, jsonschema,
PyYAML). Each subcommand prints what it found and exits 1 on a failure.

  manifests_check.py fixtures DIR                     sizes and SHA-256 of DIR/MANIFEST
  manifests_check.py validate --kubernetes-version V --crds DIR FILE...
  manifests_check.py rbac FILE...
  manifests_check.py compare [--allow SPEC]... EXPECTED ACTUAL...
"""

import argparse
import copy
import difflib
import hashlib
import json
import re
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv
from referencing import Registry, Resource


def load(paths):
    """Every object of the YAML streams, with the file it came from."""
    objects = []
    for path in paths:
        with open(path) as stream:
            for doc in yaml.safe_load_all(stream):
                if doc is not None:
                    objects.append((path, doc))
    return objects


def ident(obj):
    meta = obj.get("metadata", {})
    namespace = meta.get("namespace")
    name = meta.get("name")
    return f"{obj.get('kind')}/{namespace + '/' if namespace else ''}{name}"


def fail(message):
    print(f"  {message}")
    return 1


# --- fixtures --------------------------------------------------------------------------------


def cmd_fixtures(args):
    directory = Path(args.dir)
    failures = 0
    count = 0
    for line in (directory / "MANIFEST").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        local, _source, size, sha256 = line.split("\t")
        data = (directory / local).read_bytes()
        count += 1
        if len(data) != int(size) or hashlib.sha256(data).hexdigest() != sha256:
            failures += fail(f"{directory / local}: differs from its MANIFEST line (size or SHA-256)")
    print(f"  {count} files as in {directory / 'MANIFEST'}")
    return 1 if failures or count == 0 else 0


# --- validate --------------------------------------------------------------------------------


def schema_dir(version):
    """kubernetes-validate's strict schemas for VERSION (the newest not newer, as it picks)."""
    chosen = [v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor(version)]
    if not chosen:
        raise SystemExit(f"kubernetes-validate has no schemas for {version}")
    return f"kubernetes-json-schema/v{chosen[-1]}-local-strict"


def object_meta_validator(version):
    """ObjectMeta, strict, as kubernetes-validate resolves it for built-in kinds."""
    directory = schema_dir(version)
    schema = kv.schema_contents(f"{directory}/objectmeta-meta-v1.json", version)
    definitions = kv.schema_contents(f"{directory}/_definitions.json", version)
    registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def strict_structural(node):
    """A CRD's structural schema as the API server applies it with strict field validation
    (kubectl's default): a field that no `properties` (or `additionalProperties`) names is
    unknown and rejected, unless x-kubernetes-preserve-unknown-fields keeps it."""
    if not isinstance(node, dict):
        return node
    for child in (node.get("properties") or {}).values():
        strict_structural(child)
    if isinstance(node.get("items"), dict):
        strict_structural(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        strict_structural(node["additionalProperties"])
    is_object = node.get("type") == "object" or "properties" in node
    if (
        is_object
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False
    return node


def crd_validators(directory):
    """(apiVersion, kind) -> (validator, scope, CRD file) for every served version."""
    found = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        spec = crd["spec"]
        for version in spec["versions"]:
            if not version.get("served"):
                continue
            schema = strict_structural(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
            # metadata is ObjectMeta, checked with Kubernetes' own schema (cmd_validate).
            schema["properties"]["metadata"] = {"type": "object"}
            for unsupported in ("x-kubernetes-validations",):
                if unsupported in json.dumps(schema):
                    raise SystemExit(f"{path}: {unsupported} (CEL) cannot be checked here")
            # OpenAPI v3 schemas use draft 4's keywords (exclusiveMinimum as a boolean).
            validator = jsonschema.validators.Draft4Validator(schema)
            found[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = (
                validator,
                spec["scope"],
                path.name,
            )
    return found


def where(error, prefix=()):
    path = ".".join(str(p) for p in (*prefix, *error.absolute_path))
    return f"{path}: {error.message}" if path else error.message


def cmd_validate(args):
    crds = crd_validators(args.crds)
    meta = object_meta_validator(args.kubernetes_version)
    failures = 0
    kinds = {}
    objects = load(args.files)
    if not objects:
        return fail("no objects to validate")
    for path, obj in objects:
        name = f"{path}: {ident(obj)}"
        key = (obj.get("apiVersion"), obj.get("kind"))
        kinds[obj.get("kind")] = kinds.get(obj.get("kind"), 0) + 1
        if key in crds:
            validator, scope, source = crds[key]
            errors = [where(e) for e in validator.iter_errors(obj)]
            errors += [where(e, ("metadata",)) for e in meta.iter_errors(obj.get("metadata", {}))]
            if scope == "Namespaced" and not obj.get("metadata", {}).get("namespace"):
                errors.append("metadata.namespace: missing for a namespaced kind")
            for error in errors:
                failures += fail(f"{name} (CRD {source}): {error}")
            continue
        try:
            kubernetes_validate.validate(obj, args.kubernetes_version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            failures += fail(f"{name}: no schema for {key[0]} {key[1]} (neither built in nor a vendored CRD)")
        except kubernetes_validate.ValidationError as e:
            failures += fail(f"{name}: {where(e)}")
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    print(f"  {len(objects)} objects ({summary}) against Kubernetes {args.kubernetes_version}, strict")
    return 1 if failures else 0


# --- rbac ------------------------------------------------------------------------------------


def cmd_rbac(args):
    failures = 0
    roles = 0
    for path, obj in load(args.files):
        if obj.get("kind") not in ("Role", "ClusterRole"):
            continue
        roles += 1
        if obj.get("aggregationRule"):
            failures += fail(f"{path}: {ident(obj)}: an aggregationRule grants whatever it selects")
        for i, rule in enumerate(obj.get("rules") or []):
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                for value in rule.get(field) or []:
                    if "*" in value:
                        failures += fail(f"{path}: {ident(obj)}: rules[{i}].{field} has the wildcard {value!r}")
    if roles == 0:
        return fail("no Role or ClusterRole found")
    print(f"  {roles} roles, {failures or 'no'} wildcard(s)")
    return 1 if failures else 0


# --- compare ---------------------------------------------------------------------------------

ALLOW = re.compile(r"^(?P<object>[^:]+):(?P<path>[^=]+)=(?P<expected>.*)->(?P<actual>.*)$")


def walk(obj, path):
    """(parent, key) of PATH (dots; [N] for a list index) in OBJ, or None."""
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    node = obj
    for part in parts[:-1]:
        key = int(part[1:-1]) if part.startswith("[") else part
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None
    last = parts[-1]
    key = int(last[1:-1]) if last.startswith("[") else last
    try:
        node[key]
    except (KeyError, IndexError, TypeError):
        return None
    return node, key


def differences(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            child = f"{path}.{key}" if path else str(key)
            if key not in a:
                yield f"{child}: only in the rendering"
            elif key not in b:
                yield f"{child}: only in the expected"
            else:
                yield from differences(a[key], b[key], child)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{path}: {len(a)} items expected, {len(b)} rendered"
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{path}[{i}]")
    elif a != b or type(a) is not type(b):
        yield f"{path}: {a!r} expected, {b!r} rendered"


def cmd_compare(args):
    expected = {ident(o): o for _, o in load([args.expected])}
    actual = {}
    failures = 0
    for path, obj in load(args.actual):
        if ident(obj) in actual:
            failures += fail(f"{path}: {ident(obj)} rendered twice")
        actual[ident(obj)] = obj
    for name in sorted(set(expected) - set(actual)):
        failures += fail(f"{name}: expected, not rendered")
    for name in sorted(set(actual) - set(expected)):
        failures += fail(f"{name}: rendered, not expected")
    for spec in args.allow:
        m = ALLOW.match(spec)
        if not m:
            raise SystemExit(f"bad --allow {spec!r}: KIND/[NAMESPACE/]NAME:PATH=EXPECTED->RENDERED")
        name = m["object"]
        want = walk(expected[name], m["path"]) if name in expected else None
        got = walk(actual[name], m["path"]) if name in actual else None
        if (
            want is None
            or got is None
            or want[0][want[1]] != m["expected"]
            or got[0][got[1]] != m["actual"]
        ):
            failures += fail(f"documented difference not found (update the list): {spec}")
            continue
        got[0][got[1]] = want[0][want[1]]
    for name in sorted(set(expected) & set(actual)):
        diffs = list(differences(expected[name], actual[name]))
        if not diffs:
            continue
        failures += fail(f"{name} differs:")
        for d in diffs:
            print(f"    {d}")
        dump = lambda o: yaml.safe_dump(o, sort_keys=True, default_flow_style=False).splitlines()
        for line in difflib.unified_diff(
            dump(expected[name]), dump(actual[name]), args.expected, "rendered", lineterm="", n=2
        ):
            print(f"    {line}")
    if not failures:
        print(f"  {len(expected)} objects equal, but for {len(args.allow)} documented difference(s)")
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fixtures")
    p.add_argument("dir")
    p.set_defaults(run=cmd_fixtures)
    p = sub.add_parser("validate")
    p.add_argument("--kubernetes-version", required=True)
    p.add_argument("--crds", required=True)
    p.add_argument("files", nargs="+")
    p.set_defaults(run=cmd_validate)
    p = sub.add_parser("rbac")
    p.add_argument("files", nargs="+")
    p.set_defaults(run=cmd_rbac)
    p = sub.add_parser("compare")
    p.add_argument("--allow", action="append", default=[])
    p.add_argument("expected")
    p.add_argument("actual", nargs="+")
    p.set_defaults(run=cmd_compare)
    args = parser.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
