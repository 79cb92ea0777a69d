"""deploy/: the systemd unit, the Dockerfile and the Kubernetes example, run as far as
this machine allows: the unit's ExecStart and the Dockerfile's RUN, CMD and HEALTHCHECK
commands are run in a fresh venv (their paths mapped into a temporary folder, the
metrics port made a free one, 0.0.0.0 made loopback) against the sandbox; docker,
systemd and a cluster are not needed."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from fragment_core.connectors.file import write_sample
from fragment_core.testing.install import offline_env, overlay_venv, run

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
METRICS_PORT = "9464"


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def _write_config(path: Path, sandbox, state: str, backlog: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_sample(backlog, 10)
    path.write_text(
        f'[tasks_api]\nurl = "{sandbox.url}"\ntoken = "${{FRAGMENT_TOKEN}}"\nrate_limit = 0\n'
        f'[state]\nurl = "{state}"\n'
        '[[sources]]\nname = "kyc"\nconnector = "file"\nevery = "1s"\n'
        f'[sources.options]\npath = "{backlog}"\n'
    )


def _run_until_healthy_then_stop(
    argv: list[str], env: dict[str, str], cwd: Path, port: str, stop_timeout: float
) -> dict:
    """Start ``argv``, wait for /healthz and one ok run in /metrics, SIGTERM it, expect 0."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    health: dict = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                metrics = httpx.get(f"{base}/metrics").text
                if re.search(r'fragment_runs_total\{outcome="ok",source="kyc"\} [1-9]', metrics):
                    health = httpx.get(f"{base}/healthz").json()
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=stop_timeout)
    assert health == {"status": "ok", "sources": {"kyc": "ok"}}, (out, err)
    assert proc.returncode == 0, err
    return health


# -- systemd ---------------------------------------------------------------------------


def _unit(path: Path) -> dict[str, list[str]]:
    """Keys of a systemd unit file, each with its values in order."""
    keys: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def test_the_systemd_unit_starts_serves_health_and_stops_on_sigterm(tmp_path, sandbox) -> None:
    unit = _unit(DEPLOY / "fragment.service")
    root = {
        "/opt/fragment": tmp_path / "opt",
        "/etc/fragment": tmp_path / "etc",
        "/var/lib/fragment": tmp_path / "state",
    }

    def mapped(text: str) -> str:
        for real, here in root.items():
            text = text.replace(real, str(here))
        return text

    # the unit's expectations, as operating.md sets them up
    venv = overlay_venv(root["/opt/fragment"])
    installed = run(venv / "bin" / "pip", "install", "-q", REPO, env=offline_env(venv))
    assert installed.returncode == 0, installed.stderr
    root["/var/lib/fragment"].mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAGMENT")}
    env["PATH"] = "/usr/bin:/bin"  # systemd's PATH: no venv activated
    for assignment in unit["Environment"]:
        key, _, value = mapped(assignment).partition("=")
        env[key] = value
    config = Path(env["FRAGMENT_CONFIG"])
    state = f"sqlite:///{root['/var/lib/fragment'] / 'fragment-state.db'}"
    _write_config(config, sandbox, state, root["/var/lib/fragment"] / "backlog.csv")
    env_file = Path(mapped(unit["EnvironmentFile"][0].lstrip("-")))
    env_file.write_text(f"FRAGMENT_TOKEN={sandbox.token}\n")
    env_file.chmod(0o600)
    for line in env_file.read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value

    port = _free_port()
    argv = [a.replace(METRICS_PORT, port) for a in shlex.split(mapped(unit["ExecStart"][0]))]
    assert unit["KillSignal"] == ["SIGTERM"]
    _run_until_healthy_then_stop(
        argv, env, Path(mapped(unit["WorkingDirectory"][0])), port,
        stop_timeout=float(unit["TimeoutStopSec"][0]),
    )  # fmt: skip
    verify = shutil.which("systemd-analyze")
    if verify:  # where systemd's tools exist, the unit must also pass their checks
        copy = tmp_path / "fragment.service"
        copy.write_text(mapped((DEPLOY / "fragment.service").read_text()))
        checked = run(verify, "verify", copy)
        assert checked.returncode == 0, checked.stdout + checked.stderr


# -- Dockerfile ------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def _exec_form(text: str) -> list[str]:
    return json.loads(text) if text.startswith("[") else ["sh", "-c", text]


class Image:
    """What "building" deploy/Dockerfile here leaves: the environment, the working
    folder and the CMD, HEALTHCHECK and STOPSIGNAL of the image."""

    def __init__(self, env: dict[str, str], root: dict[str, Path]) -> None:
        self.env = env
        self.root = root
        self.workdir = Path.cwd()
        self.cmd: list[str] = []
        self.healthcheck: list[str] = []
        self.stop_signal = "SIGTERM"

    def mapped(self, text: str) -> str:
        for real, here in self.root.items():
            text = re.sub(rf"(?<![\w/]){re.escape(real)}(?=[/\s'\"]|$)", str(here), text)
        return text

    def build(self, dockerfile: Path, args: dict[str, str]) -> None:
        for word, rest in _instructions(dockerfile):
            if word == "ARG":
                name, _, default = rest.partition("=")
                self.env[name] = args.setdefault(name, default.strip('"'))
            elif word == "ENV":
                for pair in shlex.split(rest):
                    key, _, value = pair.partition("=")
                    self.env[key] = self.mapped(value)
            elif word == "RUN":
                self.run(rest)
            elif word == "WORKDIR":
                self.workdir = Path(self.mapped(rest))
            elif word == "CMD":
                self.cmd = _exec_form(rest)
            elif word == "HEALTHCHECK":
                self.healthcheck = _exec_form(rest.split("CMD", 1)[1].strip())
            elif word == "STOPSIGNAL":
                self.stop_signal = rest

    def run(self, command: str) -> None:
        done = subprocess.run(
            ["sh", "-c", self.mapped(command)], cwd=self.workdir, env=self.env,
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, f"RUN {command}\n{done.stdout}{done.stderr}"


def test_the_dockerfile_commands_build_and_run_fragment(tmp_path, sandbox) -> None:
    root = {"/src": REPO, "/data": tmp_path / "data", "/etc/fragment": tmp_path / "etc"}
    venv = overlay_venv(tmp_path / "image")  # the image's python, without fragment yet
    env = offline_env(venv, {k: v for k, v in os.environ.items() if not k.startswith("FRAGMENT")})
    image = Image(env, root)
    image.build(DEPLOY / "Dockerfile", {"PLUGINS": "fragment-hubspot"})  # --build-arg
    assert image.cmd and image.healthcheck and image.stop_signal == "SIGTERM"
    listed = run(venv / "bin" / "fragment", "connectors", "list", "--json", env=env)
    assert {"file", "http", "hubspot"} <= {c["name"] for c in json.loads(listed.stdout)}

    port = _free_port()
    state = f"sqlite:///{root['/data'] / 'fragment-state.db'}"  # the image's /data volume
    _write_config(Path(env["FRAGMENT_CONFIG"]), sandbox, state, root["/data"] / "backlog.csv")
    env["FRAGMENT_TOKEN"] = sandbox.token
    argv = [a.replace(METRICS_PORT, port).replace("0.0.0.0", "127.0.0.1") for a in image.cmd]
    proc = subprocess.Popen(
        argv, cwd=image.workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        healthy = None
        probe = [a.replace(METRICS_PORT, port) for a in image.healthcheck]
        while time.monotonic() < deadline and proc.poll() is None:
            healthy = subprocess.run(probe, env=env, capture_output=True, timeout=30)
            if healthy.returncode == 0:
                break
            time.sleep(0.3)
        assert healthy is not None and healthy.returncode == 0, "HEALTHCHECK never passed"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert (root["/data"] / "fragment-state.db").exists()  # the state is on the volume


# -- Kubernetes ------------------------------------------------------------------------


def test_the_kubernetes_example_matches_the_image_and_its_config_validates(tmp_path) -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text())}
    assert set(docs) == {"ConfigMap", "PersistentVolumeClaim", "Deployment"}
    deployment = docs["Deployment"]["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"]["type"] == "Recreate"
    pod = deployment["template"]["spec"]
    (container,) = pod["containers"]
    dockerfile = dict(_instructions(DEPLOY / "Dockerfile"))
    assert container["args"] == json.loads(dockerfile["CMD"])
    port = container["ports"][0]
    assert str(port["containerPort"]) == dockerfile["EXPOSE"] == METRICS_PORT
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert str(pod["securityContext"]["runAsUser"]) == dockerfile["USER"].split(":")[0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config_path = next(e["value"] for e in container["env"] if e["name"] == "FRAGMENT_CONFIG")
    assert Path(config_path).parent == Path(mounts["config"])
    text = docs["ConfigMap"]["data"][Path(config_path).name]
    assert f"sqlite:///{mounts['state']}/" in text  # the state is on the volume
    config = tmp_path / "fragment.toml"
    config.write_text(text)
    env = {**os.environ, "FRAGMENT_TOKEN": "t", "BACKOFFICE_TOKEN": "t"}
    checked = run(
        Path(sys.executable).parent / "fragment", "config", "validate", config, env=env
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_is_clicks_and_completes_commands(shell: str) -> None:
    env = {**os.environ, "_FRAGMENT_COMPLETE": f"{shell}_source"}
    fragment = Path(sys.executable).parent / "fragment"
    script = run(fragment, env=env)
    assert script.returncode == 0 and "_FRAGMENT_COMPLETE" in script.stdout
    if shell == "bash":
        env = {
            **os.environ, "_FRAGMENT_COMPLETE": "bash_complete",
            "COMP_WORDS": "fragment con", "COMP_CWORD": "1",
        }  # fmt: skip
        words = run(fragment, env=env).stdout.split()
        assert "plain,config" in words and "plain,connectors" in words


def test_the_unit_shown_in_operating_md_is_the_one_in_deploy() -> None:
    page = (REPO / "docs" / "operating.md").read_text()
    (shown,) = re.findall(r"^```ini\n(.*?)^```", page, flags=re.S | re.M)
    unit = (DEPLOY / "fragment.service").read_text().splitlines()
    assert [line for line in shown.splitlines() if line not in unit] == []
