"""deploy/ checked without a Docker engine or a cluster: every file parses, and the pieces agree.

The manifests, the Dockerfile, docker-compose and gunicorn.conf.py are checked against each
other and against the code they run: commands and queues match routerhub/celery.py, probes hit
the health views with a Host header ALLOWED_HOSTS accepts, every environment variable set is
one that routerhub/settings.py (or gunicorn.conf.py) reads, and the production configuration
actually boots Django's settings.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import runpy
import shlex
import subprocess
import sys
import tempfile
import types
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SETTINGS = ROOT / "routerhub" / "settings.py"
# settings.py reads the rest of its values through these parts (routerhub/settings_parts/).
SETTINGS_PARTS = sorted((ROOT / "routerhub" / "settings_parts").glob("*.py"))
GUNICORN_CONF = DEPLOY / "gunicorn.conf.py"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"

GUNICORN_CMD = ["gunicorn", "routerhub.asgi:application", "-c", "deploy/gunicorn.conf.py"]
QUEUES = {"default", "training"}
# Variables for the interpreter and the container, not for the application.
PROCESS_ENV = {
    "PATH",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONPATH",
    "DJANGO_SETTINGS_MODULE",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
}
PLACEHOLDER = "change-me"


# --- helpers -------------------------------------------------------------------------------------


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})


def load_docs(path: Path) -> list[Any]:
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def k8s_docs() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in load_docs(path)
    ]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in k8s_docs() if d["kind"] == kind]


def one(kind: str) -> dict[str, Any]:
    docs = of_kind(kind)
    assert len(docs) == 1, f"expected one {kind}, found {len(docs)}"
    return docs[0]


def workloads() -> list[dict[str, Any]]:
    return of_kind("Deployment") + of_kind("Job")


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    pod = workload["spec"]["template"]["spec"]
    return list(pod.get("initContainers", [])) + list(pod["containers"])


def argv(container: dict[str, Any]) -> list[str]:
    return [str(a) for a in container.get("command", [])] + [
        str(a) for a in container.get("args", [])
    ]


def deployment(name: str) -> dict[str, Any]:
    matches = [d for d in of_kind("Deployment") if d["metadata"]["name"] == name]
    assert matches, f"no Deployment {name}"
    return matches[0]


def celery_queues(cmd: list[str]) -> set[str]:
    """The queues of a `celery ... worker -Q a,b` command line (also --queues / -Qa,b)."""
    queues: set[str] = set()
    for i, arg in enumerate(cmd):
        value = None
        if arg in {"-Q", "--queues"} and i + 1 < len(cmd):
            value = cmd[i + 1]
        elif arg.startswith("--queues="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-Q") and len(arg) > 2:
            value = arg[2:]
        if value:
            queues.update(q.strip() for q in value.split(",") if q.strip())
    return queues


def is_celery(cmd: list[str], sub: str) -> bool:
    return cmd[:3] == ["celery", "-A", "routerhub"] and sub in cmd[3:]


def settings_source() -> str:
    """settings.py with its parts, as one text."""
    return "\n".join(path.read_text() for path in [SETTINGS, *SETTINGS_PARTS])


def settings_env_names() -> set[str]:
    """Every environment variable routerhub/settings.py reads, parsed from its source."""
    text = settings_source()
    names = set(re.findall(r"\benv(?:\.\w+)?\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']", text))
    names |= set(re.findall(r"\b_(?:secret|decimal|bool)\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']", text))
    return names


def required_secrets() -> set[str]:
    """Secrets settings.py refuses to boot without in production (the `_secret(...)` ones)."""
    return set(re.findall(r"\b_secret\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']", settings_source()))


def gunicorn_env_names() -> set[str]:
    text = GUNICORN_CONF.read_text()
    return set(re.findall(r"(?:environ\.get|_int)\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']", text))


def known_env_names() -> set[str]:
    return settings_env_names() | runtime_env_names() | gunicorn_env_names() | PROCESS_ENV


def sensitive(name: str) -> bool:
    """Names whose values are credentials: they belong in the Secret, never in the ConfigMap."""
    if "PUBLISHABLE" in name:
        return False
    return bool(re.search(r"SECRET|PEPPER|PASSWORD|TOKEN|ENCRYPTION|API_KEY$|_URL$", name)) and (
        name not in {"SITE_URL", "STRIPE_API_BASE", "AWS_S3_ENDPOINT_URL", "DEMO_UPSTREAM_URL"}
    )


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {raw!r}"
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"{path.name}: bad name {key!r}"
        assert key not in values, f"{path.name}: {key} set twice"
        values[key] = value
    return values


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return instructions


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list), rest
    return [str(v) for v in value]


_BOOT = """
import json, os, environ

class Recording(dict):
    def __init__(self):
        super().__init__(os.environ)
        self.read = set()
    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)
    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)
    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

environ.Env.ENVIRON = recording = Recording()
import django
django.setup()
from django.conf import settings as s
print(json.dumps({
    "env": s.ROUTERHUB_ENV,
    "debug": s.DEBUG,
    "hosts": s.ALLOWED_HOSTS,
    "db": s.DATABASES["default"]["ENGINE"],
    "read": sorted(recording.read),
}))
"""


def boot_settings(environment: dict[str, str], var_dir: Path) -> dict[str, Any]:
    """Import the real settings in a fresh interpreter with only `environment` set.

    Also reports every variable the settings looked up (names computed at run time, such as the
    provider key variables, escape the source parser).
    """
    env = {"PATH": os.environ.get("PATH", ""), **environment}
    env["ROUTERHUB_VAR_DIR"] = str(var_dir)
    env["DJANGO_SETTINGS_MODULE"] = "routerhub.settings"
    proc = subprocess.run(
        [sys.executable, "-c", _BOOT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"settings failed to load:\n{proc.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@functools.cache
def runtime_env_names() -> frozenset[str]:
    """Variables the settings read when booted with the Kubernetes configuration.

    Booted as ROUTERHUB_ENV=test so that a missing production secret fails only the tests about
    secrets, not this inventory; production-only branches are covered by the source parser.
    """
    secret = one("Secret")
    environment = {**one("ConfigMap")["data"], **secret.get("stringData", {})}
    environment["ROUTERHUB_ENV"] = "test"
    with tempfile.TemporaryDirectory() as var_dir:
        booted = boot_settings(environment, Path(var_dir))
    return frozenset(booted["read"])


# --- parsing -------------------------------------------------------------------------------------


def test_settings_parser_finds_the_variables_it_must() -> None:
    """Guards the checks below: if the regex stopped matching, they would pass vacuously."""
    names = settings_env_names()
    expected = {
        "ROUTERHUB_ENV",
        "SECRET_KEY",
        "API_KEY_PEPPER",
        "DATABASE_URL",
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "ALLOWED_HOSTS",
        "EMAIL_URL",
        "STORAGE_BACKEND",
    }
    assert expected <= names, expected - names
    assert {"SECRET_KEY", "API_KEY_PEPPER"} <= required_secrets()
    assert {"PORT", "WEB_CONCURRENCY"} <= gunicorn_env_names()


def test_every_yaml_file_parses() -> None:
    files = yaml_files()
    names = {p.relative_to(DEPLOY).as_posix() for p in files}
    assert "docker-compose.yml" in names
    assert sum(n.startswith("k8s/") for n in names) >= 5
    for path in files:
        assert load_docs(path), f"{path} holds no YAML document"


def test_k8s_documents_are_well_formed() -> None:
    docs = k8s_docs()
    assert docs
    seen: set[tuple[str, str]] = set()
    for doc in docs:
        assert isinstance(doc, dict)
        assert doc.get("apiVersion"), doc
        assert doc.get("kind"), doc
        name = doc.get("metadata", {}).get("name")
        assert name, f"{doc['kind']} without metadata.name"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
        assert (doc["kind"], name) not in seen, f"duplicate {doc['kind']}/{name}"
        seen.add((doc["kind"], name))


def test_required_k8s_kinds_exist() -> None:
    kinds = Counter(doc["kind"] for doc in k8s_docs())
    assert kinds["Deployment"] >= 2, kinds
    for kind in ("HorizontalPodAutoscaler", "Job", "Service", "Ingress", "ConfigMap", "Secret"):
        assert kinds[kind] >= 1, f"no {kind} in deploy/k8s"
    assert one("HorizontalPodAutoscaler")["apiVersion"] == "autoscaling/v2"


def test_kustomization_lists_every_manifest_but_the_placeholder_secret() -> None:
    kustomization = load_docs(K8S / "kustomization.yaml")[0]
    listed = set(kustomization["resources"])
    for name in listed:
        assert (K8S / name).is_file(), f"kustomization lists missing {name}"
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    secret_files = {
        p.name for p in K8S.glob("*.yaml") if any(d["kind"] == "Secret" for d in load_docs(p))
    }
    assert secret_files, "no Secret manifest"
    # Applying placeholder secrets would overwrite the real ones from the secret manager.
    assert not (listed & secret_files)
    assert listed == on_disk - secret_files


# --- Kubernetes workloads -------------------------------------------------------------------------


def test_deployment_selectors_match_their_pods() -> None:
    for workload in of_kind("Deployment"):
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), workload["metadata"]["name"]
    pod_labels = [
        tuple(sorted(d["spec"]["template"]["metadata"]["labels"].items())) for d in workloads()
    ]
    assert len(pod_labels) == len(set(pod_labels)), "two workloads' pods are indistinguishable"


def test_every_container_uses_the_one_image_with_resources_and_runs_as_non_root() -> None:
    images = set()
    for workload in workloads():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, workload["metadata"]["name"]
        assert pod["securityContext"]["runAsUser"] != 0
        for container in containers(workload):
            images.add(container["image"])
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), (
                    f"{workload['metadata']['name']}/{container['name']} lacks {bound}"
                )
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert len(images) == 1, images


def test_web_runs_gunicorn_with_the_deploy_config() -> None:
    web = deployment("routerhub-web")
    (container,) = containers(web)
    assert argv(container) == GUNICORN_CMD
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000}
    env = {e["name"]: e for e in container.get("env", [])}
    assert env["PORT"]["value"] == "8000"
    # Workers = CPUs of the limit, not of the node.
    field = env["WEB_CONCURRENCY"]["valueFrom"]["resourceFieldRef"]
    assert field["resource"] == "limits.cpu"
    assert field["containerName"] == container["name"]
    grace = web["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    conf = load_gunicorn_conf({})
    assert grace > conf["graceful_timeout"], "the kubelet would kill requests gunicorn drains"


def test_workers_run_celery_and_cover_every_queue_with_a_training_deployment() -> None:
    routed = set(re.findall(r"\"queue\":\s*\"(\w+)\"", (ROOT / "routerhub/celery.py").read_text()))
    assert routed <= QUEUES
    covered: set[str] = set()
    training_deployments = []
    for workload in of_kind("Deployment"):
        for container in containers(workload):
            cmd = argv(container)
            if is_celery(cmd, "worker"):
                queues = celery_queues(cmd)
                assert queues, f"{workload['metadata']['name']} consumes no explicit queue"
                assert queues <= QUEUES, queues
                covered |= queues
                if queues == {"training"}:
                    training_deployments.append(workload["metadata"]["name"])
    assert covered == QUEUES
    assert len(training_deployments) == 1, "training needs its own worker Deployment"


def test_beat_is_a_singleton() -> None:
    beats = [
        d for d in of_kind("Deployment") if any(is_celery(argv(c), "beat") for c in containers(d))
    ]
    assert len(beats) == 1
    assert beats[0]["spec"]["replicas"] == 1
    assert beats[0]["spec"]["strategy"]["type"] == "Recreate"


def test_migration_job_runs_migrate() -> None:
    job = one("Job")
    (container,) = containers(job)
    assert argv(container)[:3] == ["python", "manage.py", "migrate"]
    assert "--noinput" in argv(container)
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_probes_hit_health_views_with_an_allowed_host() -> None:
    from django.http.request import validate_host

    urls = (ROOT / "routerhub/urls.py").read_text()
    assert re.search(r"path\(\s*[\"']healthz[\"']", urls)
    assert re.search(r"path\(\s*[\"']readyz[\"']", urls)
    allowed = one("ConfigMap")["data"]["ALLOWED_HOSTS"].split(",")
    (container,) = containers(deployment("routerhub-web"))
    port_names = {p["name"] for p in container["ports"]} | {
        p["containerPort"] for p in container["ports"]
    }
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container.get(kind)
        if probe is None:
            continue
        get = probe["httpGet"]
        assert get["path"] in {"/healthz", "/readyz"}
        assert get["port"] in port_names
        # Django answers 400 to a Host outside ALLOWED_HOSTS; the kubelet sends the pod IP.
        headers = {h["name"].lower(): h["value"] for h in get.get("httpHeaders", [])}
        assert "host" in headers, f"{kind} sends the pod IP as Host"
        assert validate_host(headers["host"], allowed), (headers["host"], allowed)


def test_hpa_targets_the_web_deployment_with_cpu_requests() -> None:
    hpa = one("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment"
    web = deployment(target["name"])
    assert any(argv(c) == GUNICORN_CMD for c in containers(web))
    assert "replicas" not in web["spec"], "the HPA owns replicas; applying must not reset them"
    assert 1 < hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    metrics = hpa["spec"]["metrics"]
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in metrics)
    # Utilization is relative to requests: without them the HPA cannot compute it.
    assert all("cpu" in c["resources"]["requests"] for c in containers(web))


def test_service_and_ingress_route_to_the_web_pods() -> None:
    service = one("Service")
    web = deployment("routerhub-web")
    pod_labels = web["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (container,) = containers(web)
    port_names = {p["name"] for p in container["ports"]}
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    for port in service_ports.values():
        assert port["targetPort"] in port_names | {p["containerPort"] for p in container["ports"]}
    ingress = one("Ingress")
    allowed = one("ConfigMap")["data"]["ALLOWED_HOSTS"].split(",")
    for rule in ingress["spec"]["rules"]:
        assert rule["host"] in allowed
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            port = backend["port"]
            assert port.get("name") in service_ports or port.get("number") in {
                p["port"] for p in service_ports.values()
            }


# --- configuration and secrets --------------------------------------------------------------------


def test_workloads_take_configuration_from_the_configmap_and_secret() -> None:
    config_name = one("ConfigMap")["metadata"]["name"]
    secret_name = one("Secret")["metadata"]["name"]
    for workload in workloads():
        for container in containers(workload):
            refs = {(k, v["name"]) for src in container.get("envFrom", []) for k, v in src.items()}
            assert refs == {("configMapRef", config_name), ("secretRef", secret_name)}, workload[
                "metadata"
            ]["name"]


def test_every_env_var_the_manifests_set_is_read_by_the_code() -> None:
    known = known_env_names()
    set_names: dict[str, str] = {}
    set_names.update(dict.fromkeys(one("ConfigMap")["data"], "ConfigMap"))
    secret = one("Secret")
    set_names.update(dict.fromkeys(secret.get("stringData", {}), "Secret"))
    set_names.update(dict.fromkeys(secret.get("data", {}), "Secret"))
    for workload in workloads():
        for container in containers(workload):
            for entry in container.get("env", []):
                set_names[entry["name"]] = workload["metadata"]["name"]
    for stage in dockerfile_stages():
        for keyword, rest in stage:
            if keyword == "ENV":
                for token in shlex.split(rest):
                    set_names[token.split("=", 1)[0]] = "Dockerfile"
    unknown = {name: where for name, where in set_names.items() if name not in known}
    assert not unknown, f"set but never read by settings.py/gunicorn.conf.py: {unknown}"


def test_production_secrets_come_from_the_secret_and_are_placeholders() -> None:
    secret = one("Secret")
    values = {**secret.get("stringData", {}), **secret.get("data", {})}
    assert required_secrets() <= set(values), required_secrets() - set(values)
    # Credentials never sit in the ConfigMap.
    config = one("ConfigMap")["data"]
    assert not required_secrets() & set(config)
    for key in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "EMAIL_URL"):
        assert sensitive(key)
    misplaced = {key for key in config if sensitive(key)}
    assert not misplaced, f"credentials in the ConfigMap: {misplaced}"
    for workload in workloads():
        for container in containers(workload):
            for entry in container.get("env", []):
                assert not (sensitive(entry["name"]) and "value" in entry), entry["name"]
    for key, value in values.items():
        assert PLACEHOLDER in value, f"Secret {key} is not a placeholder"
    assert "secret manager" in (K8S / "secret.yaml").read_text().lower()


def test_k8s_configuration_boots_production_settings(tmp_path: Path) -> None:
    secret = one("Secret")
    environment = {**one("ConfigMap")["data"], **secret["stringData"]}
    booted = boot_settings(environment, tmp_path)
    assert booted["env"] == "production"
    assert booted["debug"] is False
    assert booted["db"] == "django.db.backends.postgresql"


# --- docker-compose -------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    (doc,) = load_docs(COMPOSE)
    return doc


def service_argv(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def depends(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("depends_on", {})
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}


def test_compose_services_and_commands() -> None:
    services = compose()["services"]
    assert {"web", "worker", "beat", "postgres", "redis", "migrate"} <= set(services)
    assert services["postgres"]["image"].split(":")[1].startswith("16")
    assert services["redis"]["image"].split(":")[1].startswith("7")
    # The usage stream must survive a restart (README, "What a Redis crash loses").
    redis_argv = service_argv(services["redis"])
    assert redis_argv[0] == "redis-server"
    assert redis_argv[redis_argv.index("--appendonly") + 1] == "yes"
    assert redis_argv[redis_argv.index("--appendfsync") + 1] == "everysec"
    assert service_argv(services["web"]) == GUNICORN_CMD
    worker = service_argv(services["worker"])
    assert is_celery(worker, "worker")
    assert celery_queues(worker) == QUEUES
    assert is_celery(service_argv(services["beat"]), "beat")
    assert service_argv(services["migrate"])[:3] == ["python", "manage.py", "migrate"]
    app_services = ("web", "worker", "beat", "migrate")
    builds = {json.dumps(services[s].get("build"), sort_keys=True) for s in app_services}
    images = {services[s].get("image") for s in app_services}
    assert len(builds) == 1 and len(images) == 1, "app services must share one image"
    build = services["web"]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_compose_start_order() -> None:
    services = compose()["services"]
    web = depends(services["web"])
    assert web.get("postgres") == "service_healthy"
    assert web.get("redis") == "service_healthy"
    assert web.get("migrate") == "service_completed_successfully"
    for name in ("worker", "beat"):
        assert depends(services[name]).get("migrate") == "service_completed_successfully"
    assert depends(services["migrate"]).get("postgres") == "service_healthy"
    for name in ("postgres", "redis"):
        assert "test" in services[name]["healthcheck"], f"{name} has no health check"
    # The image's HEALTHCHECK probes HTTP /healthz; containers that serve no HTTP override it.
    for name in ("worker", "beat", "migrate"):
        check = services[name].get("healthcheck")
        assert check and (check.get("disable") or "test" in check), name


def test_compose_environment_is_read_by_the_code_and_complete() -> None:
    services = compose()["services"]
    example = read_env_file(ENV_EXAMPLE)
    text = COMPOSE.read_text()
    interpolated = re.findall(r"\$\{([A-Z][A-Z0-9_]*)(:?[-?][^}]*)?\}", text)
    for name, modifier in interpolated:
        assert modifier.startswith((":-", "-")) or name in example, (
            f"${{{name}}} has no default and is not in .env.example"
        )
    known = known_env_names() | {name for name, _ in interpolated}
    assert not set(example) - known, set(example) - known
    for name in ("web", "worker", "beat", "migrate"):
        assert ".env" in services[name]["env_file"], name
        inline = services[name].get("environment", {})
        assert not set(inline) - known
    assert required_secrets() <= set(example)
    for key in required_secrets() | {"POSTGRES_PASSWORD"}:
        assert PLACEHOLDER in example[key], f".env.example {key} must be a placeholder"
    db_password = re.search(r"://[^:]+:([^@]+)@", example["DATABASE_URL"])
    assert db_password and db_password.group(1) == example["POSTGRES_PASSWORD"]
    assert example["DATABASE_URL"].split("@")[1].startswith("postgres:")
    for key in ("REDIS_URL", "CELERY_BROKER_URL"):
        assert example[key].startswith("redis://redis:"), key


def test_compose_configuration_boots_production_settings(tmp_path: Path) -> None:
    booted = boot_settings(read_env_file(ENV_EXAMPLE), tmp_path)
    assert booted["env"] == "production"
    assert booted["debug"] is False
    assert booted["db"] == "django.db.backends.postgresql"


# --- Dockerfile ---------------------------------------------------------------------------------


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rules, simplified: last matching pattern wins; a match on a parent counts."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        plain = body.removeprefix("**/")
        for candidate in candidates:
            if fnmatch.fnmatchcase(candidate, body) or (
                body.startswith("**/") and fnmatch.fnmatchcase(candidate.split("/")[-1], plain)
            ):
                ignored = not negate
                break
    return ignored


def test_dockerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    instructions = dockerfile_instructions()
    args = {}
    for keyword, rest in instructions:
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            args[name] = value
    stages = dockerfile_stages()
    assert len(stages) >= 2
    bases = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], s[0][1]) for s in stages]
    assert bases[-1].split()[0] == "python:3.11-slim", bases
    final = stages[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    healthchecks = [rest for keyword, rest in final if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "/healthz" in healthchecks[0]
    (cmd,) = [rest for keyword, rest in final if keyword == "CMD"]
    assert exec_form(cmd) == GUNICORN_CMD
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert any("--from=builder" in c and "/opt/venv" in c for c in copies)
    assert any("deploy/gunicorn.conf.py" in c for c in copies)


def test_dockerfile_builder_installs_from_pyproject() -> None:
    builder = dockerfile_stages()[0]
    copied = " ".join(rest for keyword, rest in builder if keyword == "COPY")
    runs = " ".join(rest for keyword, rest in builder if keyword == "RUN")
    assert "pyproject.toml" in copied
    assert "python -m venv" in runs
    assert "pip install" in runs


def test_dockerfile_build_secrets_are_dummies_that_never_reach_runtime() -> None:
    instructions = dockerfile_instructions()
    (collect,) = [rest for keyword, rest in instructions if "collectstatic" in rest]
    assert "ROUTERHUB_ENV=production" in collect
    for name in required_secrets():
        assert re.search(rf"\b{name}=\S*build", collect), f"{name} not set for collectstatic"
    for keyword, rest in instructions:
        if keyword in {"ENV", "ARG", "LABEL"}:
            for name in required_secrets():
                assert name not in rest, f"{keyword} bakes {name} into the image"


def test_dockerfile_collectstatic_environment_boots_production_settings(tmp_path: Path) -> None:
    """The image build runs collectstatic with production settings: they must load."""
    (collect,) = [rest for keyword, rest in dockerfile_instructions() if "collectstatic" in rest]
    tokens = shlex.split(collect.split("&&")[0])
    assert "collectstatic" in tokens
    inline = dict(t.split("=", 1) for t in tokens if re.fullmatch(r"[A-Z][A-Z0-9_]*=.*", t))
    image_env: dict[str, str] = {}
    for keyword, rest in dockerfile_stages()[-1]:
        if keyword == "ENV":
            image_env.update(t.split("=", 1) for t in shlex.split(rest))
    image_env.pop("PATH", None)
    image_env.pop("PYTHONPATH", None)
    booted = boot_settings({**image_env, **inline}, tmp_path)
    assert booted["env"] == "production"
    assert booted["debug"] is False


def test_dockerfile_copies_files_that_exist_and_are_not_dockerignored() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert dockerignored(".venv", patterns)
    assert dockerignored("var/db.sqlite3", patterns)
    assert dockerignored("deploy/.env", patterns)
    sources = []
    for keyword, rest in dockerfile_instructions():
        if keyword != "COPY" or "--from" in rest:
            continue
        parts = [p for p in rest.split() if not p.startswith("--")]
        sources.extend(parts[:-1])
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert not dockerignored(source, patterns), f"COPY {source} is excluded by .dockerignore"


# --- gunicorn.conf.py ---------------------------------------------------------------------------


def load_gunicorn_conf(environ: dict[str, str]) -> dict[str, Any]:
    names = ("PORT", "WEB_CONCURRENCY", "GUNICORN_ACCESS_LOG", *gunicorn_env_names())
    saved = {k: os.environ.get(k) for k in names}
    try:
        for k in names:
            os.environ.pop(k, None)
        os.environ.update(environ)
        namespace = runpy.run_path(str(GUNICORN_CONF))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {
        k: v
        for k, v in namespace.items()
        # `annotations` is the __future__ feature flag, not a setting.
        if not k.startswith("_")
        and k != "annotations"
        and not isinstance(v, types.ModuleType | types.FunctionType)
    }


def test_gunicorn_conf_sets_only_real_settings_and_an_importable_uvicorn_worker() -> None:
    from gunicorn.config import Config
    from gunicorn.util import load_class
    from gunicorn.workers.base import Worker

    conf = load_gunicorn_conf({})
    cfg = Config()
    # Gunicorn silently ignores unknown names in a config file: a typo would do nothing.
    unknown = set(conf) - set(cfg.settings)
    assert not unknown, unknown
    for key, value in conf.items():
        cfg.set(key, value)  # gunicorn's own validators
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        worker = load_class(cfg.worker_class_str)
    assert issubclass(worker, Worker)
    assert worker.__name__ == "UvicornWorker"
    assert cfg.worker_class_str in {
        "uvicorn.workers.UvicornWorker",
        "uvicorn_worker.UvicornWorker",
    }
    assert conf["wsgi_app"] == GUNICORN_CMD[1]
    assert conf["accesslog"] is None, "access log is off by default"
    assert 0 < conf["graceful_timeout"] <= conf["timeout"]
    assert conf["keepalive"] > 0


def test_gunicorn_conf_reads_port_and_concurrency_from_the_environment() -> None:
    defaults = load_gunicorn_conf({})
    assert defaults["bind"] == "0.0.0.0:8000"
    assert defaults["workers"] == (os.cpu_count() or 1)
    tuned = load_gunicorn_conf({"PORT": "9123", "WEB_CONCURRENCY": "3", "GUNICORN_ACCESS_LOG": "1"})
    assert tuned["bind"] == "0.0.0.0:9123"
    assert tuned["workers"] == 3
    assert tuned["accesslog"] == "-"
    with pytest.raises(SystemExit):
        load_gunicorn_conf({"WEB_CONCURRENCY": "lots"})


def test_make_serve_uses_the_deploy_config() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "routerhub.asgi:application" in makefile
    assert "-c deploy/gunicorn.conf.py" in makefile


def test_the_access_log_redacts_tokens_in_paths() -> None:
    """With GUNICORN_ACCESS_LOG=1 every path is logged; the worker hook puts gunicorn's (and so
    uvicorn's) access and error handlers behind routerhub.logs' redaction."""
    import io
    from types import SimpleNamespace

    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    saved = dict(os.environ)
    try:
        namespace = runpy.run_path(str(GUNICORN_CONF))
    finally:  # the config file sets defaults in the environment (USAGE_SETTLER)
        os.environ.clear()
        os.environ.update(saved)
    config = Config()
    config.set("accesslog", "-")
    log = Logger(config)
    namespace["post_worker_init"](SimpleNamespace(log=log))
    written = io.StringIO()
    for handler in log.access_log.handlers:
        handler.setStream(written)  # type: ignore[attr-defined]
    token = "Zq7" + "y" * 30

    log.access_log.info('"GET /invitations/%s/ HTTP/1.1" 200', token)

    assert written.getvalue().strip() == '"GET /invitations/[redacted]/ HTTP/1.1" 200'


def test_each_uvicorn_worker_takes_on_at_most_worker_connections() -> None:
    """The uvicorn worker ignores gunicorn's ``worker_connections``; the post_fork hook makes it
    uvicorn's ``limit_concurrency`` (past it, requests get 503 instead of queueing for threads
    and database connections)."""
    from gunicorn.config import Config
    from gunicorn.glogging import Logger
    from gunicorn.util import load_class

    saved = dict(os.environ)
    try:
        os.environ["GUNICORN_WORKER_CONNECTIONS"] = "37"
        namespace = runpy.run_path(str(GUNICORN_CONF))
    finally:  # the config file sets defaults in the environment (USAGE_SETTLER)
        os.environ.clear()
        os.environ.update(saved)
    config = Config()
    config.set("worker_connections", namespace["worker_connections"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        worker_class = load_class(namespace["worker_class"])
    worker = worker_class(0, os.getpid(), [], None, 30, config, Logger(config))
    assert worker.config.limit_concurrency is None  # uvicorn's default: no limit

    namespace["post_fork"](None, worker)

    assert worker.config.limit_concurrency == 37
