#!/usr/bin/env python3
"""Structural checks of deploy/compose.yaml (no Docker engine needed).

Usage: compose_check.py REPO_ROOT
       compose_check.py REPO_ROOT --stage-prometheus DIR
Prints the relay service's RELAY__ environment as KEY=VALUE lines on success (run.sh
feeds them to `outbox-relay check`), or the problems found and exits 1.

With --stage-prometheus, after the same checks, copies every file the prometheus service
mounts to DIR + its path in the container and prints the staged config file's path
instead, so that `promtool check config` sees the configuration and its rule files laid
out as the container does.
"""

import fnmatch
import json
import os
import posixpath
import re
import shutil
import sys
from urllib.parse import urlsplit

import yaml

root = sys.argv[1]
stage_dir = sys.argv[3] if len(sys.argv) == 4 and sys.argv[2] == "--stage-prometheus" else None
compose_dir = os.path.join(root, "deploy")
path = os.path.join(compose_dir, "compose.yaml")
problems = []


def need(cond, msg):
    if not cond:
        problems.append(msg)


with open(path) as f:
    doc = yaml.safe_load(f)
services = doc.get("services") or {}
need(
    set(services) >= {"postgres", "kafka", "sns-sqs", "relay"},
    f"services: want postgres, kafka, sns-sqs, relay; have {sorted(services)}",
)
named_volumes = set((doc.get("volumes") or {}).keys())

for name, svc in services.items():
    need("image" in svc or "build" in svc, f"{name}: neither image nor build")
    build = svc.get("build")
    if isinstance(build, dict):
        ctx = os.path.normpath(os.path.join(compose_dir, build.get("context", ".")))
        need(os.path.isdir(ctx), f"{name}: build context {ctx} missing")
        dockerfile = os.path.join(ctx, build.get("dockerfile", "Dockerfile"))
        need(os.path.isfile(dockerfile), f"{name}: Dockerfile {dockerfile} missing")
    for vol in svc.get("volumes") or []:
        src = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
        if src.startswith((".", "/")):
            need(os.path.exists(os.path.join(compose_dir, src)), f"{name}: volume source {src} missing")
        else:
            need(src in named_volumes, f"{name}: named volume {src} not declared")
    for dep in svc.get("depends_on") or {}:
        need(dep in services, f"{name}: depends_on unknown service {dep}")
        cond = (
            (svc["depends_on"][dep] or {}).get("condition") if isinstance(svc["depends_on"], dict) else None
        )
        if cond == "service_healthy":
            need(
                "healthcheck" in services.get(dep, {}),
                f"{name}: waits for {dep} to be healthy but it has no healthcheck",
            )
    for port in svc.get("ports") or []:
        need(re.fullmatch(r"\d+:\d+", str(port)) is not None, f"{name}: port {port!r} not HOST:CONTAINER")

pg = services.get("postgres", {})
need(
    re.match(r"postgres:(1[5-9]|[2-9]\d)", pg.get("image", "")) is not None,
    "postgres: want image postgres:15 or newer",
)
need("wal_level=logical" in (pg.get("command") or []), "postgres: command must set wal_level=logical")
need(any("docker-entrypoint-initdb.d" in v for v in pg.get("volumes") or []), "postgres: no init SQL mounted")

kafka = services.get("kafka", {})
need(kafka.get("image", "").startswith("apache/kafka:"), "kafka: want the apache/kafka image")
with open(os.path.join(root, "deploy/local/kafka/pom.xml")) as f:
    m = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", f.read())
need(
    m is not None and kafka.get("image") == f"apache/kafka:{m.group(1)}",
    f"kafka: image should be apache/kafka:{m.group(1) if m else '?'} (the local scripts' Kafka version)",
)
kenv = kafka.get("environment") or {}
need(
    "controller" in str(kenv.get("KAFKA_PROCESS_ROLES", "")), "kafka: not in KRaft mode (KAFKA_PROCESS_ROLES)"
)
need("KAFKA_CONTROLLER_QUORUM_VOTERS" in kenv, "kafka: KAFKA_CONTROLLER_QUORUM_VOTERS missing")

relay = services.get("relay", {})
need(
    relay.get("build", {}).get("dockerfile") == "deploy/Dockerfile", "relay: not built from deploy/Dockerfile"
)
need(
    "./local/relay.yaml:/etc/outbox-relay/relay.yaml:ro" in (relay.get("volumes") or []),
    "relay: must mount deploy/local/relay.yaml (the local scripts' config) at /etc/outbox-relay/relay.yaml",
)
renv = relay.get("environment") or {}
for key in ("RELAY__SOURCE__HOST", "RELAY__SOURCE__PORT", "RELAY__SINK__KAFKA__BROKERS"):
    need(key in renv, f"relay: environment {key} missing")
need(
    str(renv.get("RELAY__SOURCE__HOST")) == "postgres",
    "relay: RELAY__SOURCE__HOST must name the postgres service",
)
need(
    str(renv.get("RELAY__SINK__KAFKA__BROKERS", "")).startswith("kafka:"),
    "relay: RELAY__SINK__KAFKA__BROKERS must name the kafka service",
)


def ddl(text):
    m = re.search(r"CREATE TABLE IF NOT EXISTS outbox \((.*?)\)\s*[\";]", text, re.S)
    return re.sub(r"\s+", " ", m.group(1)).strip() if m else None


with open(os.path.join(root, "deploy/local/demo.sh")) as f:
    demo = ddl(f.read())
with open(os.path.join(compose_dir, "compose/init.sql")) as f:
    init = ddl(f.read())
need(
    demo is not None and demo == init,
    f"compose/init.sql DDL differs from deploy/local/demo.sh:\n  {init}\n  {demo}",
)


# ---- profile monitoring: Prometheus scrapes the relay with the alert rules; Grafana has
# that Prometheus as its data source and the dashboard.


def binds(svc):
    """Container path -> host path (absolute) of a service's bind mounts."""
    out = {}
    for vol in svc.get("volumes") or []:
        src, _, rest = vol.partition(":") if isinstance(vol, str) else (vol.get("source", ""), "", "")
        target = rest.split(":")[0] if isinstance(vol, str) else vol.get("target", "")
        if src.startswith((".", "/")):
            out[target] = os.path.normpath(os.path.join(compose_dir, src))
    return out


def flag(svc, name, default=None):
    """The value of --name=VALUE in a service's command."""
    for arg in svc.get("command") or []:
        if str(arg).startswith(f"--{name}="):
            return str(arg).split("=", 1)[1]
    return default


def load_mounted(svc_name, mounts, container_path, what):
    host = mounts.get(container_path)
    need(host is not None, f"{svc_name}: {what} {container_path} is not mounted")
    if host is None or not os.path.isfile(host):
        return None
    with open(host) as f:
        return yaml.safe_load(f)


def relay_metrics_port():
    listen = str(renv.get("RELAY__TELEMETRY__LISTEN", ""))
    need(listen.startswith("0.0.0.0:"), "relay: RELAY__TELEMETRY__LISTEN must be 0.0.0.0:PORT in a container")
    return listen.rsplit(":", 1)[-1]


def rules_jobs(path):
    with open(path) as f:
        return set(re.findall(r'\bjob="([^"]+)"', f.read()))


rules_host = os.path.join(compose_dir, "prometheus/outbox-relay-rules.yaml")
dashboard_host = os.path.join(compose_dir, "grafana/outbox-relay.json")
prom = services.get("prometheus", {})
graf = services.get("grafana", {})
prom_config_path = None
prom_mounts = binds(prom)
for name, svc, image in (("prometheus", prom, "prom/prometheus:v"), ("grafana", graf, "grafana/grafana:")):
    need(svc != {}, f"{name}: service missing (profile monitoring)")
    profiles = svc.get("profiles")
    need(profiles == ["monitoring"], f"{name}: want profiles [monitoring], have {profiles}")
    img = svc.get("image", "")
    need(
        img.startswith(image) and not img.endswith(":latest"),
        f"{name}: want a pinned {image}<version> image, have {img!r}",
    )

if prom:
    need("relay" in (prom.get("depends_on") or {}), "prometheus: should depend on relay")
    prom_config_path = flag(prom, "config.file", "/etc/prometheus/prometheus.yml")
    pcfg = load_mounted("prometheus", prom_mounts, prom_config_path, "--config.file") or {}
    # Rule files: every pattern resolves against the config file's directory, and the
    # rules file of deploy/prometheus is mounted where a pattern matches it.
    config_dir = posixpath.dirname(prom_config_path)
    patterns = [posixpath.join(config_dir, p) for p in pcfg.get("rule_files") or []]
    rule_targets = [t for t, h in prom_mounts.items() if h == os.path.normpath(rules_host)]
    need(rule_targets != [], "prometheus: deploy/prometheus/outbox-relay-rules.yaml is not mounted")
    for t in rule_targets:
        need(
            any(fnmatch.fnmatch(t, p) for p in patterns),
            f"prometheus: the rules mounted at {t} match no rule_files pattern of its config ({patterns})",
        )
    # Scrape targets: the relay's metrics port under the job name the alert rules select;
    # every target a compose service.
    jobs = {j.get("job_name"): j for j in pcfg.get("scrape_configs") or []}
    wanted_jobs = rules_jobs(rules_host)
    need(len(wanted_jobs) == 1, f"alert rules select jobs {sorted(wanted_jobs)}, want one")
    job = next(iter(wanted_jobs), "outbox-relay")
    targets = [t for sc in (jobs.get(job) or {}).get("static_configs") or [] for t in sc.get("targets") or []]
    want = f"relay:{relay_metrics_port()}"
    need(want in targets, f"prometheus: job {job} (the rules' job) must scrape {want}; has {targets}")
    for j in jobs.values():
        for sc in j.get("static_configs") or []:
            for t in sc.get("targets") or []:
                need(t.split(":")[0] in services, f"prometheus: target {t} is not a compose service")

if graf:
    need("prometheus" in (graf.get("depends_on") or {}), "grafana: should depend on prometheus")
    gmounts = binds(graf)
    ds_dir = "/etc/grafana/provisioning/datasources/"
    db_dir = "/etc/grafana/provisioning/dashboards/"
    # Data source: the profile's Prometheus, at the port it listens on, as the default
    # data source of the type the dashboard's datasource variable asks for.
    with open(dashboard_host) as f:
        dashboard = json.load(f)
    ds_var = next((v for v in dashboard["templating"]["list"] if v.get("type") == "datasource"), {})
    prom_port = (flag(prom, "web.listen-address", ":9090") or ":9090").rsplit(":", 1)[-1]
    sources = []
    for target in [t for t in gmounts if t.startswith(ds_dir)]:
        doc = load_mounted("grafana", gmounts, target, "data source file") or {}
        sources += doc.get("datasources") or []
    ok = [
        d
        for d in sources
        if d.get("type") == ds_var.get("query") == "prometheus"
        and urlsplit(d.get("url", "")).hostname == "prometheus"
        and str(urlsplit(d.get("url", "")).port) == prom_port
        and d.get("isDefault") is True
    ]
    need(
        ok != [],
        f"grafana: no provisioned default data source of type {ds_var.get('query')!r} at "
        f"http://prometheus:{prom_port} under {ds_dir} (have {sources})",
    )
    # Dashboard: a file provider whose path holds deploy/grafana/outbox-relay.json.
    providers = []
    for target in [t for t in gmounts if t.startswith(db_dir)]:
        doc = load_mounted("grafana", gmounts, target, "dashboard provider") or {}
        providers += doc.get("providers") or []
    dash_targets = [t for t, h in gmounts.items() if h == os.path.normpath(dashboard_host)]
    need(dash_targets != [], "grafana: deploy/grafana/outbox-relay.json is not mounted")
    provided = [
        t
        for t in dash_targets
        for p in providers
        if p.get("type", "file") == "file"
        and posixpath.dirname(t) == posixpath.normpath((p.get("options") or {}).get("path", "."))
    ]
    need(
        provided != [],
        f"grafana: no file provider under {db_dir} reads the directory of {dash_targets} (have {providers})",
    )
    home = (graf.get("environment") or {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    need(home is None or home in dash_targets, f"grafana: home dashboard {home} is not the mounted dashboard")

if problems:
    print("\n".join("compose.yaml: " + p for p in problems))
    sys.exit(1)
if stage_dir is not None:
    for target, host in prom_mounts.items():
        dest = os.path.join(stage_dir, target.lstrip("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(host, dest)
    print(os.path.join(stage_dir, prom_config_path.lstrip("/")))
    sys.exit(0)
for k, v in renv.items():
    if k.startswith("RELAY__"):
        print(f"{k}={v}")
