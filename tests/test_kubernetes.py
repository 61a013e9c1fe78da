"""deploy/kubernetes and deploy/container, checked by real tools where they can run here.

- kustomize (``kubectl kustomize``, offline) renders the base, the GPU overlay and the monitoring
  set; every rendered object of the core API is validated against the Kubernetes OpenAPI schemas
  that the kubernetes-validate package ships (strict: an unknown or misspelt key fails). Where
  kubectl is missing or its kustomize predates v4 (Debian 12's kubernetes-client 1.20 has v2.0.3,
  which cannot read ``patches:``), ``kustomize_here`` renders the few features these files use;
  where a modern kubectl runs, both renderings are compared so that stand-in stays faithful.
- The ConfigMap's cameras.yaml is loaded by camwatch's own loader with the environment and
  Secret the StatefulSet gives it, and must agree with the StatefulSet (members = replicas,
  ports, mount paths).
- The Containerfiles cannot be built (no base image can be pulled here): their instructions
  are read and checked against the CLI, the StatefulSet and the README's dependency choices.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from camwatch.cli.main import build_parser
from camwatch.config import load_config
from camwatch.store.backend import is_postgres

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "kubernetes"
CONTAINER = REPO / "deploy" / "container"
KUBE_VERSION = "1.30.0"
kubectl = shutil.which("kubectl")


def _kustomize_major() -> int:
    """The major version of kubectl's built-in kustomize; 0 when there is no kubectl or it does not say."""
    if kubectl is None:
        return 0
    r = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30)
    try:
        return int(json.loads(r.stdout).get("kustomizeVersion", "v0").lstrip("v").split(".")[0])
    except (ValueError, json.JSONDecodeError):
        return 0


KUSTOMIZE = _kustomize_major()


def kubectl_kustomize(folder: str) -> list[dict]:
    r = subprocess.run([kubectl or "kubectl", "kustomize", str(K8S / folder)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "deprecated" not in r.stderr.lower(), r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def _merge(into: dict, patch: dict) -> None:
    """A strategic merge as kustomize does it for these files: maps by key, lists of named maps by name."""
    for key, value in patch.items():
        old = into.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            _merge(old, value)
        elif (isinstance(value, list) and isinstance(old, list)
              and all(isinstance(x, dict) and "name" in x for x in value + old)):
            named = {x["name"]: x for x in old}
            for item in value:
                if item["name"] in named:
                    _merge(named[item["name"]], item)
                else:
                    old.append(item)
        else:
            into[key] = value


def kustomize_here(folder: Path) -> list[dict]:
    """resources, configMapGenerator (files), images (newTag), patches (path), namespace: what these files use."""
    k = yaml.safe_load((folder / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator", "images", "patches"}
    assert set(k) <= known, f"{folder}: kustomize_here does not know {set(k) - known}"
    objs: list[dict] = []
    for res in k.get("resources", []):
        path = folder / res
        objs += kustomize_here(path) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d]
    for gen in k.get("configMapGenerator", []):
        objs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]},
                     "data": {Path(f).name: (folder / f).read_text() for f in gen["files"]}})
    for image in k.get("images", []):
        for obj in objs:
            for c in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                if c["image"].rsplit(":", 1)[0] == image["name"]:
                    c["image"] = f"{image['name']}:{image['newTag']}"
    for patch in k.get("patches", []):
        doc = yaml.safe_load((folder / patch["path"]).read_text())
        _merge(next(o for o in objs if (o["kind"], o["metadata"]["name"]) == (doc["kind"], doc["metadata"]["name"])),
               doc)
    if "namespace" in k:
        for obj in objs:
            if obj["kind"] != "Namespace":
                obj["metadata"]["namespace"] = k["namespace"]
    return objs


def render(folder: str) -> list[dict]:
    """The objects kustomize makes of a folder under deploy/kubernetes."""
    return kubectl_kustomize(folder) if KUSTOMIZE >= 4 else kustomize_here(K8S / folder)


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return render("base")


@pytest.fixture(scope="module")
def gpu() -> list[dict]:
    return render("gpu")


def one(objs: list[dict], kind: str) -> dict:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, (kind, [o["kind"] for o in objs])
    return found[0]


def container(objs: list[dict]) -> dict:
    return one(objs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.skipif(KUSTOMIZE < 4, reason="no kubectl with kustomize v4 or later to compare with")
@pytest.mark.parametrize("folder", ["base", "gpu", "monitoring"])
def test_the_stand_in_renders_as_kustomize_does(folder):
    def canonical(x: object) -> object:   # named list items in any order (a patch's come first in kustomize's)
        if isinstance(x, dict):
            return {k: canonical(v) for k, v in x.items()}
        if isinstance(x, list):
            items = [canonical(v) for v in x]
            named = all(isinstance(v, dict) and "name" in v for v in items)
            return sorted(items, key=lambda v: v["name"]) if named and items else items  # type: ignore[index]
        return x

    def unhashed(objs: list[dict]) -> object:
        text = json.dumps(sorted(objs, key=lambda o: (o["kind"], o["metadata"]["name"])), sort_keys=True)
        return canonical(json.loads(re.sub(r'"camwatch-config-[a-z0-9]{10}"', '"camwatch-config"', text)))
    assert unhashed(kubectl_kustomize(folder)) == unhashed(kustomize_here(K8S / folder))


def test_schemas_ship_offline_and_catch_a_bad_key(monkeypatch):
    kv = pytest.importorskip("kubernetes_validate")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("kubernetes-validate tried the network")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    good = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
            "spec": {"ports": [{"port": 9808, "targetPort": "metrics"}]}}
    kv.validate(good, KUBE_VERSION, strict=True)
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
           "spec": {"ports": [{"port": 9808, "targetPrt": "metrics"}]}}
    with pytest.raises(kv.ValidationError) as err:
        kv.validate(bad, KUBE_VERSION, strict=True)
    assert "targetPrt" in err.value.message


@pytest.mark.parametrize("folder", ["base", "gpu"])
def test_rendered_objects_valid_against_kubernetes_schemas(folder):
    kv = pytest.importorskip("kubernetes_validate")
    objs = render(folder)
    assert {o["kind"] for o in objs} == {"Namespace", "Service", "StatefulSet", "Secret", "ConfigMap"}
    for obj in objs:
        try:
            kv.validate(obj, KUBE_VERSION, strict=True)
        except kv.ValidationError as exc:
            raise AssertionError(f"{folder}: {obj['kind']} {obj['metadata']['name']}: {exc.message} "
                                 f"at {list(exc.path)}") from None


def test_statefulset_members_probes_and_security(base):
    sts = one(base, "StatefulSet")
    spec, pod = sts["spec"], sts["spec"]["template"]["spec"]
    svc = one(base, "Service")
    assert spec["serviceName"] == svc["metadata"]["name"] and svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    c = container(base)
    assert c["args"] == ["run"]
    assert build_parser().parse_args(c["args"]).command == "run"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    for probe in ("readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/var/lib/camwatch"] == "state" and mounts["/tmp"] == "tmp"
    assert [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]] == ["state"]


def test_cameras_file_agrees_with_the_statefulset(base, tmp_path, monkeypatch):
    """The ConfigMap's file, loaded as member camwatch-2 loads it: env and Secret as the pod has them."""
    sts, cm, secret = one(base, "StatefulSet"), one(base, "ConfigMap"), one(base, "Secret")
    c = container(base)
    env = {e["name"]: e["value"] for e in c["env"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == cm["metadata"]["name"]
    assert volumes["credentials"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert env["CREDENTIALS_DIRECTORY"] == mounts["credentials"]
    assert Path(env["CAMWATCH_CONFIG"]).parent == Path(mounts["config"])
    (tmp_path / "etc").mkdir()
    cfg = tmp_path / "etc" / Path(env["CAMWATCH_CONFIG"]).name
    cfg.write_text(cm["data"][cfg.name])
    creds = tmp_path / "credentials"
    creds.mkdir()
    for key, value in secret["stringData"].items():
        (creds / key).write_text(value)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    config = load_config(cfg)
    s = config.settings
    assert s.cluster.members == sts["spec"]["replicas"]
    assert s.cluster.replication >= 2          # one member down loses no camera
    assert config.cluster("camwatch-2").member == 2
    assert s.metrics.address == "0.0.0.0" and s.metrics.port == c["ports"][0]["containerPort"]
    assert s.state_dir == Path(mounts["state"])
    assert (s.device, s.require_gpu) == ("cpu", False)
    # One shared PostgreSQL store, its password from the Secret (key db-pass), not from the ConfigMap.
    assert is_postgres(s.store)
    assert secret["stringData"]["db-pass"] in str(s.store)
    assert secret["stringData"]["db-pass"] not in cm["data"][cfg.name] and "${cred:db-pass}" in cm["data"][cfg.name]


def test_gpu_overlay_asks_for_a_gpu_and_requires_it(base, gpu):
    c = container(gpu)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e["value"] for e in c["env"]}
    assert (env["CAMWATCH_DEVICE"], env["CAMWATCH_REQUIRE_GPU"]) == ("cuda", "true")
    assert c["image"].endswith("-gpu") and c["image"].rsplit(":", 1)[0] == container(base)["image"].rsplit(":", 1)[0]
    # Everything else is the base's: same probes, mounts and security.
    for key in ("livenessProbe", "readinessProbe", "startupProbe", "volumeMounts", "securityContext", "ports"):
        assert c[key] == container(base)[key], key


def test_monitoring_scrapes_each_member_as_job_camwatch_and_carries_the_tested_rules(base):
    objs = render("monitoring")
    pm, rule = one(objs, "PodMonitor"), one(objs, "PrometheusRule")
    labels = one(base, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert pm["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels[pm["spec"]["jobLabel"]] == "camwatch"          # the rules expect job="camwatch"
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == container(base)["ports"][0]["name"]
    prom = REPO / "deploy" / "prometheus"
    groups = [g for f in ("camwatch.rules.yml", "camwatch-fleet.rules.yml")
              for g in yaml.safe_load((prom / f).read_text())["groups"]]
    assert rule["spec"]["groups"] == groups, \
        "prometheusrule.yaml is stale: python3 deploy/kubernetes/monitoring/make_prometheusrule.py"


# -- Containerfiles ---------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") and not pending:
            continue
        pending += line.rstrip().removesuffix("\\") + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            if pending.strip():
                word, _, rest = pending.strip().partition(" ")
                out.append((word.upper(), " ".join(rest.split())))
            pending = ""
    return out


def last(ins: list[tuple[str, str]], word: str) -> str:
    return [a for w, a in ins if w == word][-1]


@pytest.mark.parametrize("name", ["Containerfile", "Containerfile.gpu"])
def test_containerfile_user_volume_entrypoint(name, base):
    ins = instructions(CONTAINER / name)
    words = [w for w, _ in ins]
    assert words.count("FROM") == 2 and "AS build" in ins[words.index("FROM")][1]
    user = last(ins, "USER")
    uid, _, gid = user.partition(":")
    sec = one(base, "StatefulSet")["spec"]["template"]["spec"]["securityContext"]
    assert int(uid) == sec["runAsUser"] and int(gid) == sec["runAsGroup"] and int(uid) > 0
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")   # nothing runs as root after
    assert json.loads(last(ins, "VOLUME")) == ["/var/lib/camwatch"]
    entry, cmd = json.loads(last(ins, "ENTRYPOINT")), json.loads(last(ins, "CMD"))
    assert entry == ["camwatch"]
    assert "camwatch = \"camwatch.cli.main:main\"" in (REPO / "pyproject.toml").read_text()
    assert build_parser().parse_args(cmd).command == "run"
    env = dict(shlex.split(p)[0].split("=", 1) for p in shlex.split(last(ins, "ENV")))
    pod_env = {e["name"]: e["value"] for e in container(base)["env"]}
    assert env["CAMWATCH_CONFIG"] == pod_env["CAMWATCH_CONFIG"]
    assert env["STATE_DIRECTORY"] == "/var/lib/camwatch" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    # The shipped model travels inside the package the image installs.
    copies = [a for w, a in ins if w == "COPY"]
    assert "camwatch ./camwatch" in copies and "pyproject.toml README.md ./" in copies
    # The build context keeps what COPY reads and nothing else (no .venv, no state, no footage).
    ignore = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
              if ln.strip() and not ln.startswith("#")]
    assert ignore[0] == "*"
    sources = [src for a in copies if "--from=" not in a for src in a.split()[:-1]]
    assert {f"!{src.rstrip('/')}" for src in sources} <= {i.rstrip("/") for i in ignore}, (sources, ignore)
    assert 'models/*.onnx' in (REPO / "pyproject.toml").read_text()
    assert "/healthz" in last(ins, "HEALTHCHECK")


def test_cpu_and_gpu_images_install_what_the_readme_says():
    cpu = " ".join(a for w, a in instructions(CONTAINER / "Containerfile") if w == "RUN")
    gpu = " ".join(a for w, a in instructions(CONTAINER / "Containerfile.gpu") if w == "RUN")
    readme = (REPO / "README.md").read_text()
    assert "pip install '.[gpu]'`, then `pip install --force-reinstall --no-deps onnxruntime-gpu" in readme
    assert "[gpu]" not in cpu and "onnxruntime-gpu" not in cpu
    assert "camwatch[gpu]" in gpu
    # The CUDA build laid over the CPU one last, as the README orders it.
    assert gpu.index("camwatch[gpu]") < gpu.index("--force-reinstall --no-deps onnxruntime-gpu")
