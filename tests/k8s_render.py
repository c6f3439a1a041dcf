"""A small, offline kustomize renderer and Kubernetes validators for tests/unit/test_deploy.py.

Renderer: the subset of kustomize v5 that deploy/ uses, with kustomize's semantics, and nothing else — any
other kustomization field raises `Unsupported`, so a manifest change that needs more fails loudly instead of
being rendered wrong. Supported:

* `resources` (YAML files and kustomization directories) and `components` (kind: Component);
* `configMapGenerator` (files, literals, options.labels/annotations, disableNameSuffixHash) and
  `generatorOptions`; hashed names use kustomize's hash and references to them from pod templates
  (volumes, envFrom, env valueFrom) are renamed;
* `patches` whose content is a JSON 6902 operation list (add, remove, replace, test), selected by `target`;
* `namespace` (skipping cluster-scoped kinds) and `labels` (pairs, includeTemplates; includeSelectors false);
* `images` (name, newName, newTag, digest), as `kustomize edit set image` writes them.

Transformers run in kustomize's order: resources, components, generators, patches, namespace, labels,
images.
When kubectl is installed the tests compare this renderer's output with `kubectl kustomize`.

Validators: CRD openAPIV3Schema -> JSON Schema (strict about unknown fields, as `kubectl apply` is by
default), and the two families of CEL rules (`x-kubernetes-validations`) that the CRDs here use most:
`matches(self, '<re>')` and "exactly/at most/at least N of has(self.a), has(self.b), ...". Other CEL rules are
reported as not evaluated.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "components",
    "namespace",
    "labels",
    "configMapGenerator",
    "generatorOptions",
    "images",
    "patches",
}
# Kinds kustomize's namespace transformer leaves alone (the ones a deploy/ manifest could plausibly use).
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "GatewayClass",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
    "IngressClass",
    "RuntimeClass",
}
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the CRDs are several MB
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class Unsupported(ValueError):
    """The kustomization uses something this renderer does not implement."""


Obj = dict[str, Any]


# --------------------------------------------------------------------------------------------- render


def render(path: str | Path, extra_components: Iterable[str | Path] = ()) -> list[Obj]:
    """Objects `kustomize build PATH` would produce; `extra_components` act as if listed in PATH's
    `components:` (after its own)."""
    root = Path(path)
    spec = _load_kustomization(root, expect_kind="Kustomization")
    objects: list[Obj] = []
    for entry in spec.get("resources", []):
        objects.extend(_load_resource(root, entry))
    components = [_resolve(root, entry) for entry in spec.get("components", [])]
    for component in components + [Path(extra).resolve() for extra in extra_components]:
        objects = _apply_component(component, objects)
    return _transform(root, spec, objects)


def _apply_component(root: Path, objects: list[Obj]) -> list[Obj]:
    spec = _load_kustomization(root, expect_kind="Component")
    objects = list(objects)
    for entry in spec.get("resources", []):
        objects.extend(_load_resource(root, entry))
    return _transform(root, spec, objects)


def _transform(root: Path, spec: dict[str, Any], objects: list[Obj]) -> list[Obj]:
    objects = objects + _generate_configmaps(root, spec, objects)
    for patch in spec.get("patches", []):
        _apply_patch(root, patch, objects)
    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = spec["namespace"]
    for label_set in spec.get("labels", []):
        _apply_labels(label_set, objects)
    for image in spec.get("images", []):
        _set_image(image, objects)
    return objects


def _load_kustomization(root: Path, expect_kind: str) -> dict[str, Any]:
    for name in KUSTOMIZATION_FILES:
        if (root / name).is_file():
            spec = yaml.safe_load((root / name).read_text()) or {}
            break
    else:
        raise FileNotFoundError(f"no kustomization file in {root}")
    unknown = set(spec) - SUPPORTED_FIELDS
    if unknown:
        raise Unsupported(
            f"{root}: kustomization fields not supported by tests/k8s_render.py: {sorted(unknown)}"
        )
    kind = spec.get("kind", "Kustomization")
    if kind != expect_kind:
        raise Unsupported(f"{root}: expected kind {expect_kind}, found {kind}")
    return spec


def _resolve(root: Path, entry: str) -> Path:
    if "://" in entry or entry.startswith("git@"):
        raise Unsupported(f"remote resource {entry!r}")
    return (root / entry).resolve()


def _load_resource(root: Path, entry: str) -> list[Obj]:
    target = _resolve(root, entry)
    if target.is_dir():
        return render(target)
    objects = [doc for doc in yaml.safe_load_all(target.read_text()) if doc]
    for obj in objects:
        if not isinstance(obj, dict) or "kind" not in obj or "apiVersion" not in obj:
            raise ValueError(f"{target}: not a Kubernetes object: {obj!r:.80}")
        if obj["kind"].endswith("List"):
            raise Unsupported(f"{target}: List objects")
    return objects


# ----------------------------------------------------------------------------------------- generators


def _generate_configmaps(root: Path, spec: dict[str, Any], existing: list[Obj]) -> list[Obj]:
    global_options = spec.get("generatorOptions", {})
    unknown = set(global_options) - {"labels", "annotations", "disableNameSuffixHash"}
    if unknown:
        raise Unsupported(f"generatorOptions {sorted(unknown)}")
    generated = []
    for generator in spec.get("configMapGenerator", []):
        unknown = set(generator) - {"name", "files", "literals", "options"}
        if unknown:
            raise Unsupported(f"configMapGenerator fields {sorted(unknown)}")
        options = {**global_options, **generator.get("options", {})}
        data = _configmap_data(root, generator)
        configmap: Obj = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": generator["name"]},
            "data": data,
        }
        for key in ("labels", "annotations"):
            if options.get(key):
                configmap["metadata"][key] = dict(options[key])
        if not options.get("disableNameSuffixHash", False):
            hashed = f"{generator['name']}-{configmap_hash(data)}"
            configmap["metadata"]["name"] = hashed
            _rename_configmap_refs(existing, generator["name"], hashed)
        generated.append(configmap)
    return generated


def _configmap_data(root: Path, generator: dict[str, Any]) -> dict[str, str]:
    data: dict[str, str] = {}
    for item in generator.get("files", []):
        key, _, path = item.partition("=") if "=" in item else (Path(item).name, "", item)
        source = _resolve(root, path)
        if root.resolve() not in source.parents:
            raise ValueError(f"{item}: kustomize only loads files inside the kustomization directory")
        data[key] = source.read_text()
    for item in generator.get("literals", []):
        key, _, value = item.partition("=")
        data[key] = value
    return data


def configmap_hash(data: dict[str, str]) -> str:
    """kustomize's name suffix: sha256 of Go's json.Marshal of {data, kind, name} (observed: kustomize 5.5
    hashes with an empty name), first 10 hex digits with 0 1 3 a e replaced to avoid words."""
    encoded = json.dumps(
        {"data": data, "kind": "ConfigMap", "name": ""},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    for char, escape in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        encoded = encoded.replace(char, escape)  # Go escapes these by default
    digest = hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _rename_configmap_refs(objects: list[Obj], old: str, new: str) -> None:
    for obj in objects:
        pod = pod_spec(obj)
        if pod is None:
            continue
        for volume in pod.get("volumes", []):
            if volume.get("configMap", {}).get("name") == old:
                volume["configMap"]["name"] = new
            for source in volume.get("projected", {}).get("sources", []):
                if source.get("configMap", {}).get("name") == old:
                    source["configMap"]["name"] = new
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            for env_from in container.get("envFrom", []):
                if env_from.get("configMapRef", {}).get("name") == old:
                    env_from["configMapRef"]["name"] = new
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("configMapKeyRef", {})
                if ref.get("name") == old:
                    ref["name"] = new


def pod_spec(obj: Obj) -> dict[str, Any] | None:
    """The pod spec inside a workload object, or None."""
    if obj.get("kind") == "Pod":
        return obj.get("spec")
    if obj.get("kind") == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if obj.get("kind") in POD_TEMPLATE_KINDS:
        return obj["spec"]["template"]["spec"]
    return None


# -------------------------------------------------------------------------------------------- patches


def _apply_patch(root: Path, patch: dict[str, Any], objects: list[Obj]) -> None:
    unknown = set(patch) - {"path", "patch", "target"}
    if unknown:
        raise Unsupported(f"patch fields {sorted(unknown)}")
    text = (root / patch["path"]).read_text() if "path" in patch else patch["patch"]
    operations = yaml.safe_load(text)
    if not isinstance(operations, list):
        raise Unsupported("strategic-merge patches (only JSON 6902 operation lists are supported)")
    if "target" not in patch:
        raise Unsupported("JSON 6902 patches need a target")
    matched = [obj for obj in objects if _target_matches(patch["target"], obj)]
    if not matched:
        raise ValueError(f"patch target {patch['target']} matches no object")
    for obj in matched:
        for operation in operations:
            json6902(obj, operation)


def _target_matches(target: dict[str, Any], obj: Obj) -> bool:
    unknown = set(target) - {"group", "version", "kind", "name", "namespace"}
    if unknown:
        raise Unsupported(f"patch target selectors {sorted(unknown)}")
    group, _, version = obj["apiVersion"].rpartition("/")
    actual = {
        "group": group,
        "version": version,
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "namespace": obj["metadata"].get("namespace", ""),
    }
    return all(re.fullmatch(str(value), actual[key]) for key, value in target.items())


def json6902(doc: Obj, operation: dict[str, Any]) -> None:
    """Apply one RFC 6902 operation (add, remove, replace, test) in place."""
    op, pointer = operation["op"], operation["path"]
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    if not parts:
        raise Unsupported("operations on the document root")
    parent: Any = doc
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, copy.deepcopy(operation["value"]))
        elif op == "remove":
            del parent[index]
        elif op == "replace":
            parent[index] = copy.deepcopy(operation["value"])
        elif op == "test":
            if parent[index] != operation["value"]:
                raise ValueError(f"JSON patch test failed at {pointer}")
        else:
            raise Unsupported(f"JSON patch op {op!r}")
        return
    if op in ("remove", "replace", "test") and last not in parent:
        raise KeyError(f"JSON patch {op}: {pointer} does not exist")
    if op in ("add", "replace"):
        parent[last] = copy.deepcopy(operation["value"])
    elif op == "remove":
        del parent[last]
    elif op == "test":
        if parent[last] != operation["value"]:
            raise ValueError(f"JSON patch test failed at {pointer}")
    else:
        raise Unsupported(f"JSON patch op {op!r}")


def _apply_labels(label_set: dict[str, Any], objects: list[Obj]) -> None:
    unknown = set(label_set) - {"pairs", "includeSelectors", "includeTemplates"}
    if unknown or label_set.get("includeSelectors"):
        raise Unsupported("labels with includeSelectors or other fields")
    pairs = label_set.get("pairs", {})
    for obj in objects:
        obj.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if label_set.get("includeTemplates") and obj["kind"] in POD_TEMPLATE_KINDS:
            template = obj["spec"]["template"].setdefault("metadata", {})
            template.setdefault("labels", {}).update(pairs)


def _set_image(image: dict[str, Any], objects: list[Obj]) -> None:
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise Unsupported(f"images fields {sorted(unknown)}")
    for obj in objects:
        pod = pod_spec(obj)
        for container in (pod or {}).get("containers", []) + (pod or {}).get("initContainers", []):
            name, tag, digest = split_image(container["image"])
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{name}@{image['digest']}"
            elif "newTag" in image:
                container["image"] = f"{name}:{image['newTag']}"
            else:
                container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def split_image(reference: str) -> tuple[str, str, str]:
    """(name, tag, digest) of an image reference; a registry port is not a tag."""
    name, _, digest = reference.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest


# ------------------------------------------------------------------------------------------ validators


def object_key(obj: Obj) -> tuple[str, str, str, str]:
    meta = obj.get("metadata", {})
    return obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"]


def load_crd_schemas(crd_dirs: Iterable[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema for every served version of every CRD file found."""
    schemas = {}
    for directory in crd_dirs:
        for path in sorted(Path(directory).rglob("*.yaml")):
            for crd in yaml.load_all(path.read_text(), Loader=_LOADER):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                for version in crd["spec"]["versions"]:
                    if version.get("served", True):
                        schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def strict_schema(schema: Any) -> Any:
    """Copy of a structural CRD schema that rejects unknown fields (as `kubectl apply`'s default
    server-side field validation does) and accepts `nullable` values."""
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict_schema(value) for key, value in schema.items()}
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if "x-kubernetes-int-or-string" in out:
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


_MATCHES = re.compile(r"^matches\(self, '(?P<re>(?:[^'\\]|\\.)*)'\)$")
_COUNT = re.compile(
    r"^\[(?P<fields>has\(self\.\w+\)(?:,\s*has\(self\.\w+\))*)\]\.filter\(x,\s*x\s*==\s*true\)"
    r"\.size\(\)\s*(?P<op>==|<=|>=)\s*(?P<n>\d+)$"
)


def check_cel(schema: dict[str, Any], value: Any, path: str = "") -> tuple[list[str], int, int]:
    """Evaluate the supported CEL rule families along `value`. Returns (errors, evaluated, skipped)."""
    errors: list[str] = []
    evaluated = skipped = 0
    for rule in schema.get("x-kubernetes-validations", []):
        outcome = _eval_cel(rule["rule"].strip(), value)
        if outcome is None:
            skipped += 1
            continue
        evaluated += 1
        if not outcome:
            errors.append(f"{path or '.'}: {rule.get('message') or rule['rule']}")
    children: list[tuple[str, dict[str, Any], Any]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            if key in schema.get("properties", {}):
                children.append((f"{path}.{key}", schema["properties"][key], child))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        children = [(f"{path}[{i}]", schema["items"], item) for i, item in enumerate(value)]
    for child_path, child_schema, child in children:
        e, n, s = check_cel(child_schema, child, child_path)
        errors += e
        evaluated += n
        skipped += s
    return errors, evaluated, skipped


def _eval_cel(rule: str, value: Any) -> bool | None:
    match = _MATCHES.match(rule)
    if match and isinstance(value, str):
        return re.search(match["re"].replace("\\'", "'"), value) is not None
    match = _COUNT.match(rule)
    if match and isinstance(value, dict):
        names = re.findall(r"has\(self\.(\w+)\)", match["fields"])
        present = sum(name in value for name in names)
        limit = int(match["n"])
        return {"==": present == limit, "<=": present <= limit, ">=": present >= limit}[match["op"]]
    return None
