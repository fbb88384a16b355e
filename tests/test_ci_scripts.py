"""scripts/check-reproduction and scripts/pr-report, run on a tiny DVC pipeline in a temporary git
repository (offline, no DVC remote); and the CI files that call them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# One stage: reads `scale` from params.yaml, writes metrics.json (score = 1.25 * scale + 0.5).
STAGE = """\
import json
import yaml

scale = yaml.safe_load(open("params.yaml"))["scale"]
with open("metrics.json", "w") as f:
    json.dump({"score": 1.25 * scale + 0.5}, f, sort_keys=True)
    f.write("\\n")
"""
DVC_YAML = {
    "stages": {
        "score": {
            "cmd": "python make_metric.py",
            "deps": ["make_metric.py"],
            "params": ["scale"],
            "metrics": [{"metrics.json": {"cache": False}}],
        }
    }
}


def environment(**extra: str) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    for name in ("PYTHONPATH", "GITHUB_STEP_SUMMARY", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        env.pop(name, None)
    env.update(extra)
    return env


def run(command: list[str], cwd: Path, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=environment(**extra_env), capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def commit(repo: Path, message: str) -> str:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", message], repo)
    return run(["git", "rev-parse", "HEAD"], repo).stdout.strip()


def table_row(report: str, name: str) -> list[str]:
    """The cells of the one Markdown table row whose second cell is ``name``."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in report.splitlines() if line.startswith("|")]
    matches = [row for row in rows if len(row) > 1 and row[1] == name]
    assert len(matches) == 1, f"no single row for {name!r} in:\n{report}"
    return matches[0]


def sections(report: str) -> tuple[str, str]:
    """(the Metrics section, the Params section) of a pr-report report."""
    assert "## Metrics" in report and "## Params" in report, report
    before, params = report.split("## Params", 1)
    return before.split("## Metrics", 1)[1], params


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git + DVC repo with the one-stage pipeline reproduced and committed (scale 3, score 4.25),
    the two scripts under test in scripts/ and a do-nothing scripts/setup."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("check-reproduction", "pr-report"):
        shutil.copy(ROOT / "scripts" / name, repo / "scripts" / name)
    (repo / "scripts" / "setup").write_text("#!/usr/bin/env bash\n# test stub: nothing to install\nexit 0\n")
    for script in (repo / "scripts").iterdir():
        script.chmod(0o755)
    (repo / "make_metric.py").write_text(STAGE)
    (repo / "params.yaml").write_text("scale: 3\n")
    (repo / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    run(["git", "init", "-q"], repo)
    run(["git", "config", "user.name", "CI scripts test"], repo)
    run(["git", "config", "user.email", "ci-scripts-test@example.invalid"], repo)
    run(["git", "config", "commit.gpgsign", "false"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["dvc", "config", "core.analytics", "false"], repo)
    run(["dvc", "repro", "-q"], repo)
    assert json.loads((repo / "metrics.json").read_text()) == {"score": 4.25}
    commit(repo, "pipeline, reproduced")
    assert run(["git", "status", "--porcelain"], repo).stdout == ""
    return repo


@pytest.mark.slow
def test_check_reproduction_passes_on_reproduced_results(repo: Path) -> None:
    result = run(["scripts/check-reproduction"], repo, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reproduction: dvc repro -f left git status clean" in result.stdout
    assert "Running stage 'score'" in result.stdout  # -f really reran the stage
    assert run(["git", "status", "--porcelain"], repo).stdout == ""


@pytest.mark.slow
def test_check_reproduction_fails_on_a_committed_result_that_does_not_reproduce(repo: Path) -> None:
    (repo / "metrics.json").write_text('{"score": 99.5}\n')  # edited by hand, not by the pipeline
    commit(repo, "a result the pipeline does not give")

    result = run(["scripts/check-reproduction"], repo, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "reproduction FAILED: dvc repro -f changed committed results" in result.stdout
    assert "M metrics.json" in result.stdout  # git status --short
    # dvc metrics diff (plain text): Path Metric HEAD workspace Change; HEAD is the hand-edited value
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:2] == ["metrics.json", "score"]]
    assert rows == [["metrics.json", "score", "99.5", "4.25", "-95.25"]], result.stdout


@pytest.mark.slow
def test_check_reproduction_refuses_a_dirty_tree(repo: Path) -> None:
    (repo / "params.yaml").write_text("scale: 5\n")
    result = run(["scripts/check-reproduction"], repo, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not clean before reproducing" in result.stderr
    assert json.loads((repo / "metrics.json").read_text()) == {"score": 4.25}  # nothing was rerun


@pytest.mark.slow
def test_pr_report_shows_changed_param_and_metric(repo: Path, tmp_path: Path) -> None:
    base = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    (repo / "params.yaml").write_text("scale: 7\n")
    run(["dvc", "repro", "-q"], repo)
    commit(repo, "scale 7")
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")

    result = run(["scripts/pr-report", base, "-o", "report.md"], repo, GITHUB_STEP_SUMMARY=str(summary))
    report = result.stdout
    assert report.startswith("# ")
    metrics, params = sections(report)
    assert table_row(metrics, "score")[2:5] == ["4.25", "9.25", "5.0"]
    assert table_row(params, "scale")[2:4] == ["3", "7"]
    assert (repo / "report.md").read_text() == report
    assert summary.read_text() == "earlier step\n" + report  # appended, not overwritten


@pytest.mark.slow
def test_pr_report_says_no_changes(repo: Path, tmp_path: Path) -> None:
    result = run(["scripts/pr-report", "HEAD"], repo)
    metrics, params = sections(result.stdout)
    assert metrics.strip() == "no changes"
    assert params.strip() == "no changes"
    assert not (repo / "report.md").exists()


def step_runs(workflow: dict) -> list[str]:
    return [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]


def test_github_workflow_runs_the_scripts() -> None:
    workflow = yaml.safe_load((ROOT / ".github/workflows/reproduce.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert {"push", "pull_request"} <= set(triggers)
    assert workflow["permissions"]["pull-requests"] == "write"
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    used = [step["uses"].split("@")[0] for step in steps if "uses" in step]
    assert used == ["actions/checkout", "actions/setup-python"]
    assert steps[0]["with"]["fetch-depth"] == 0
    runs = step_runs(workflow)
    order = [next(i for i, run in enumerate(runs) if command in run)
             for command in ("./scripts/test", "scripts/check-reproduction", "scripts/pr-report", "gh pr comment")]
    assert order == sorted(order)
    for step in steps:
        if "scripts/pr-report" in step.get("run", "") or "gh pr comment" in step.get("run", ""):
            assert "always()" in step["if"] and "pull_request" in step["if"]
    comment = next(step for step in steps if "gh pr comment" in step.get("run", ""))
    assert "--body-file report.md" in comment["run"] and "GITHUB_TOKEN" in comment["env"]["GH_TOKEN"]


def test_gitlab_ci_runs_the_scripts() -> None:
    config = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
    script = "\n".join(config["reproduce"]["script"])
    positions = [script.index(command) for command in ("./scripts/test", "scripts/check-reproduction", "scripts/pr-report")]
    assert positions == sorted(positions)
    assert "scripts/check-reproduction || status=1" in script  # the report still runs after a failure
    assert config["reproduce"]["artifacts"]["when"] == "always"
    assert "report.md" in config["reproduce"]["artifacts"]["paths"]
