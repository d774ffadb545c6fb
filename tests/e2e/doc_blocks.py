#!/usr/bin/env python3
"""Runs every code block of README.md and deploy/README.md as a reader would (tests/e2e/doc_test.sh starts
the local run and calls this).

Each fenced block says what it is by its info string, and an untagged block fails the test:
  sh            shell commands against the local run (deploy/local/run.sh --demo on its default ports, with
                the demo exports it prints): run with bash -euo pipefail from a folder that looks like the
                repository root (build/, data/ of the local run, deploy/, tests/, tools/), must exit 0
  js            JavaScript against the local run: run with node inside an async function, with `token` and
                `customerId` set to the demo customer's; a `res` it leaves must be an HTTP 2xx response
  sh cluster    commands for a Kubernetes cluster or a container engine: run with bash against stand-ins for
                kubectl, kind, docker, podman and curl (a cluster's gateway) that check what can be checked
                offline (placeholders such as <service> take sample values) (the overlay a
                `kubectl apply -k` names renders, the files `apply -f` and `--from-file` name exist, every
                kubectl verb exists, a `docker build -f` Dockerfile exists); everything else in them is real
  sh setup      the set-up commands that install, build, start or test the project (the doc test runs under
                them): each command's script must exist and be executable
  sh bench      benchmarks (minutes long, never part of the test run): the script must exist and be executable
  text, yaml, json, promql, diagram   shown, not run
Usage: doc_blocks.py <repo root> <work dir> <env file with the demo exports>
"""
import json
import os
import re
import shlex
import subprocess
import sys

# Sample values for what runbook commands leave to the operator.
PLACEHOLDERS = {"service": "loyalty", "pod": "loyalty-0", "n": "0", "gateway": "crm.shop.test"}
RUN_KINDS = {"sh", "js", "sh cluster", "sh setup", "sh bench", "text", "yaml", "json", "promql", "diagram"}


def blocks(path):
    """(line, info, body) of every fenced block, fences read as CommonMark does."""
    out, info, start, body = [], None, 0, []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if info is None:
                m = re.match(r"^\s*```(.*)$", line.rstrip("\n"))
                if m:
                    info, start, body = m.group(1).strip(), n, []
            elif re.match(r"^\s*```\s*$", line):
                out.append((start, info, "".join(body)))
                info = None
            else:
                body.append(line)
    return out


def commands_of(body):
    """The first word of every command line of a shell block (continuations and comments skipped)."""
    words, continued = [], False
    for line in body.splitlines():
        stripped = line.strip()
        if not continued and stripped and not stripped.startswith("#"):
            words.append(shlex.split(stripped, comments=True)[0])
        continued = stripped.endswith("\\")
    return words


def main():
    root, work, env_file = sys.argv[1:4]
    env = dict(os.environ)
    # The export lines run.sh --demo prints, as a reader pastes them (several NAME=value per line).
    with open(env_file) as f:
        for line in f:
            words = shlex.split(line)
            if words[:1] == ["export"]:
                for word in words[1:]:
                    name, _, value = word.partition("=")
                    env[name] = value
    failures, ran = [], {}
    for doc in ("README.md", "deploy/README.md"):
        for line, info, body in blocks(os.path.join(root, doc)):
            where = f"{doc}:{line}"
            if info not in RUN_KINDS:
                failures.append(f"{where}: a block tagged {info!r}; tag it with one of {sorted(RUN_KINDS)}")
                continue
            ran[info] = ran.get(info, 0) + 1
            error = run(info, body, root, work, env)
            if error:
                failures.append(f"{where} ({info}): {error}")
    print("doc blocks: " + ", ".join(f"{n} {k}" for k, n in sorted(ran.items())))
    for f in failures:
        print("FAIL " + f, file=sys.stderr)
    return 1 if failures else 0


def run(info, body, root, work, env):
    if info in ("sh setup", "sh bench"):
        for word in commands_of(body):
            path = os.path.join(root, word)
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                return f"{word} is not an executable script of the repository"
        return None
    if info == "sh" or info == "sh cluster":
        e = dict(env)
        if info == "sh cluster":
            e["PATH"] = os.path.join(work, "stand-ins") + ":" + e["PATH"]
            e["EDITOR"] = "true"
            # Runbook commands name what the operator fills in: <service>, <pod>, ...
            for name in set(re.findall(r"<([a-z_]+)>", body)):
                if name not in PLACEHOLDERS:
                    return f"placeholder <{name}> has no sample value (doc_blocks.py PLACEHOLDERS)"
                body = body.replace(f"<{name}>", PLACEHOLDERS[name])
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=work, env=e, capture_output=True,
                           text=True, timeout=600)
        if r.returncode != 0:
            return f"exit {r.returncode}: {(r.stdout + r.stderr)[-1500:]}"
        return None
    if info == "js":
        script = ("(async () => {\n const token = process.env.CUSTOMER_TOKEN;\n"
                  " const customerId = process.env.CUSTOMER_ID;\n" + body +
                  "\n if (typeof res !== 'undefined' && !res.ok) {\n"
                  "   console.error('HTTP ' + res.status + ': ' + await res.text()); process.exit(1);\n }\n"
                  "})().catch((e) => { console.error(e); process.exit(1); });\n")
        r = subprocess.run(["node", "-e", script], cwd=work, env=env, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            return f"exit {r.returncode}: {(r.stdout + r.stderr)[-1500:]}"
        return None
    return None  # shown, not run


if __name__ == "__main__":
    sys.exit(main())
