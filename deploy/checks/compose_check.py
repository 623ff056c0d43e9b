#!/usr/bin/env python3
"""Structural checks of deploy/compose.yaml (no Docker engine needed).

Usage: compose_check.py REPO_ROOT
Prints the relay service's RELAY__ environment as KEY=VALUE lines on success (run.sh
feeds them to `outbox-relay check`), or the problems found and exits 1.
"""

import os
import re
import sys

import yaml

root = sys.argv[1]
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

if problems:
    print("\n".join("compose.yaml: " + p for p in problems))
    sys.exit(1)
for k, v in renv.items():
    if k.startswith("RELAY__"):
        print(f"{k}={v}")
