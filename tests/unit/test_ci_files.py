"""The nightly's CI files (docs/nightly.md): the Vagrantfile passes `vagrant validate`, the
workflow passes GitHub's workflow schema and yamllint, and each is shown failing when broken;
the workflow's dumpbed command lines name only options the CLI accepts; the Vagrantfile
provisions with README's own set-up command.

`make setup` (and so `make test`) installs vagrant and vagrant-libvirt: a box without them is
a set-up fault, so those tests fail rather than skip."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VAGRANTFILE = REPO / "Vagrantfile"
WORKFLOW = REPO / ".github" / "workflows" / "nightly.yml"
README = REPO / "README.md"
BIN = Path(sys.executable).parent  # the venv running the suite: check-jsonschema, dumpbed

DEADLINE = 120  # seconds for one tool run; vagrant validate takes about one

# Relaxed for GitHub workflows: `on:` is a key, not a truthy value; no leading `---`.
YAMLLINT_CONFIG = """\
extends: default
rules:
  line-length: {max: 120}
  document-start: disable
  truthy: {allowed-values: ["true", "false"], check-keys: false}
"""


def _run(argv: list[str], cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=DEADLINE,
                          stdin=subprocess.DEVNULL)


# --- Vagrantfile -----------------------------------------------------------------------------

def _vagrant_validate(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    """`vagrant validate` of TEXT as a Vagrantfile, from a copy in a directory of its own (it
    leaves .vagrant/ where it runs), with a VAGRANT_HOME of its own (no boxes, plugins or
    settings of the user's)."""
    vagrant = shutil.which("vagrant")
    if vagrant is None:
        pytest.fail("vagrant is not installed: `make setup` (or `make test`) installs it with vagrant-libvirt")
    work = tmp_path / "project"
    work.mkdir()
    (work / "Vagrantfile").write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAGRANT_")}
    env.update(VAGRANT_HOME=str(tmp_path / "vagrant-home"), VAGRANT_CHECKPOINT_DISABLE="1",
               VAGRANT_DEFAULT_PROVIDER="libvirt")
    return _run([vagrant, "validate"], cwd=work, env=env)


def test_vagrantfile_validates(tmp_path):
    result = _vagrant_validate(tmp_path, VAGRANTFILE.read_text())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout


def test_a_broken_vagrantfile_fails_validate(tmp_path):
    """A typo'd libvirt option is refused: validate does check the provider's settings, so
    vagrant-libvirt is loaded and the good file's options are all real ones."""
    good = VAGRANTFILE.read_text()
    broken = good.replace("libvirt.nested = true", "libvirt.nestd = true")
    assert broken != good, "the Vagrantfile no longer sets libvirt.nested = true"
    result = _vagrant_validate(tmp_path, broken)
    assert result.returncode != 0
    assert "nestd" in result.stdout + result.stderr


def test_vagrantfile_is_a_nested_kvm_debian_12_host():
    text = VAGRANTFILE.read_text()
    for pattern in [r'config\.vm\.box\s*=\s*"debian/bookworm64"',
                    r"config\.vm\.provider\s+:libvirt",
                    r"\.nested\s*=\s*true",
                    r'\.cpu_mode\s*=\s*"host-passthrough"',
                    r'synced_folder\s+"\."\s*,\s*"/vagrant"\s*,\s*type:\s*"rsync"']:
        assert re.search(pattern, text), f"Vagrantfile: no {pattern}"


def _readme_quick_start_commands() -> set[str]:
    """The commands of README's quick start block, without their comments."""
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "README's quick start has no ```sh block"
    return {line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.split("#", 1)[0].strip()}


def test_vagrantfile_provisions_with_readmes_set_up_command():
    text = VAGRANTFILE.read_text()
    match = re.search(r'^SETUP_COMMAND\s*=\s*"([^"]*)"', text, re.M)
    assert match, "Vagrantfile: no SETUP_COMMAND"
    commands = _readme_quick_start_commands()
    assert match.group(1) in commands, f"{match.group(1)!r} is none of README's quick start {sorted(commands)}"
    provisioners = re.findall(r"config\.vm\.provision\b.*?(?=\n\s*\n|\nend)", text, re.S)
    assert any("#{SETUP_COMMAND}" in p for p in provisioners), "no provisioner runs SETUP_COMMAND"


# --- the workflow ----------------------------------------------------------------------------

def _check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)])


def _yamllint(tmp_path: Path, path: Path) -> subprocess.CompletedProcess:
    config = tmp_path / "yamllint.yml"
    config.write_text(YAMLLINT_CONFIG)
    return _run([sys.executable, "-m", "yamllint", "--strict", "-c", str(config), str(path)])


def _broken_copy(tmp_path: Path, old: str, new: str) -> Path:
    """The workflow with the first OLD replaced by NEW."""
    good = WORKFLOW.read_text()
    assert old in good, f"the workflow no longer has {old!r}"
    path = tmp_path / "nightly.yml"
    path.write_text(good.replace(old, new, 1))
    return path


def test_workflow_passes_githubs_schema():
    result = _check_jsonschema(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("old, new, job", [
    ("    runs-on: [self-hosted, linux, kvm]\n", "", "shard"),                 # a job without runs-on
    ("    timeout-minutes: 30\n", "    timeout-minute: 30\n", "report"),  # a key no job has
], ids=["no-runs-on", "unknown-key"])
def test_a_broken_workflow_fails_the_schema(tmp_path, old, new, job):
    result = _check_jsonschema(_broken_copy(tmp_path, old, new))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"$.jobs.{job}:" in result.stdout  # refused where it was broken


def test_workflow_passes_yamllint(tmp_path):
    result = _yamllint(tmp_path, WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_workflow_fails_yamllint(tmp_path):
    broken = _broken_copy(tmp_path, "    timeout-minutes: 30\n", "    timeout-minutes: 30\n    timeout-minutes: 31\n")
    result = _yamllint(tmp_path, broken)
    assert result.returncode != 0
    assert "duplication of key" in result.stdout


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _dumpbed_command_lines(text: str) -> list[list[str]]:
    """The words of each `dumpbed matrix` / `dumpbed matrix-report` command in TEXT, backslash
    continuations joined, from the program on up to the first shell operator; a GitHub
    expression is one word, its blanks dropped (`${{matrix.shard}}/4`)."""
    text = re.sub(r"\$\{\{(.*?)\}\}", lambda m: "${{%s}}" % re.sub(r"\s+", "", m.group(1)), text)
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        # a command word: at the start of a line or after a blank, not in an echo's message
        match = re.search(r"(?:^|(?<=\s))(?:\S*/)?dumpbed (?:matrix|matrix-report)\b[^'\n]*", line)
        if match:
            words = shlex.split(match.group(0))
            cut = next((i for i, w in enumerate(words) if w in {"||", "&&", "|", ";"}), len(words))
            found.append(words[1:cut])
    return found


def _workflow_commands() -> list[list[str]]:
    runs = [step.get("run", "") for job in _workflow()["jobs"].values() for step in job["steps"]]
    return [c for run in runs for c in _dumpbed_command_lines(run)]


def _help_options(subcommand: str) -> set[str]:
    """The options `dumpbed SUBCOMMAND --help` lists."""
    result = _run([str(BIN / "dumpbed"), subcommand, "--help"])
    assert result.returncode == 0, result.stderr
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", result.stdout))


def test_workflow_runs_both_dumpbed_commands():
    commands = _workflow_commands()
    assert {c[0] for c in commands} == {"matrix", "matrix-report"}, commands


def test_dumpbed_command_lines_name_options_the_cli_accepts():
    """The workflow's and the Vagrantfile's `dumpbed matrix ...` lines against the CLI's help."""
    commands = _workflow_commands() + _dumpbed_command_lines(VAGRANTFILE.read_text())
    assert commands
    accepted = {name: _help_options(name) for name in sorted({c[0] for c in commands})}
    for words in commands:
        used = {w.split("=", 1)[0] for w in words if w.startswith("--")}
        unknown = used - accepted[words[0]]
        assert not unknown, f"`dumpbed {shlex.join(words)}`: {sorted(unknown)} not in `dumpbed {words[0]} --help`"


def test_the_option_check_finds_an_unknown_option():
    """The comparison above, shown failing: a made-up option is not among the help's, real ones are."""
    (words,) = _dumpbed_command_lines("run: .venv/bin/dumpbed matrix x.toml --shard 1/4 --no-such-opt")
    accepted = _help_options("matrix")
    assert {"--shard", "--hosts", "--require-kvm", "--history"} <= accepted
    assert {w for w in words if w.startswith("--")} - accepted == {"--no-such-opt"}


def test_the_nightly_matrix_file_exists():
    _help_options("matrix")  # it comes with the subcommand
    for words in _workflow_commands() + _dumpbed_command_lines(VAGRANTFILE.read_text()):
        if words[0] == "matrix":
            assert (REPO / words[1]).is_file(), f"{words[1]}: no such matrix file"


def test_shards_agree():
    """The job matrix's shards are 1..N, each runs --shard I/N into its own directory, and the
    report job looks for the same N shards."""
    shard_job = _workflow()["jobs"]["shard"]
    shards = shard_job["strategy"]["matrix"]["shard"]
    assert shard_job["strategy"]["fail-fast"] is False
    assert shards == list(range(1, len(shards) + 1))
    (matrix,) = [c for c in _workflow_commands() if c[0] == "matrix"]
    assert matrix[matrix.index("--shard") + 1] == "${{matrix.shard}}/%d" % len(shards)
    assert matrix[matrix.index("--out") + 1] == "runs/shard-${{matrix.shard}}"
    loop = re.search(r"for i in ([\d ]+);", WORKFLOW.read_text())
    assert loop and loop.group(1).split() == [str(s) for s in shards]


def test_every_job_has_a_timeout_and_runs_on_a_kvm_runner():
    for name, job in _workflow()["jobs"].items():
        assert job.get("timeout-minutes"), f"job {name}: no timeout-minutes"
        assert job["runs-on"] == ["self-hosted", "linux", "kvm"], f"job {name}: runs-on {job['runs-on']}"
