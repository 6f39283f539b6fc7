"""The README's curl examples, run as written against a live server (bash, curl and jq)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.live_api import ROOT, start_api


def _example() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- api-example:start -->\s*```bash\n(.*?)```\s*<!-- api-example:end -->", text, re.S)
    assert m, "the README lost its api-example block"
    return m.group(1)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_readme_curl_examples_work_as_written(tmp_path):
    api = start_api(tmp_path / "outputs", {})      # no token yet: serve makes the admin token itself
    try:
        token = (tmp_path / "outputs" / ".admin-token").read_text().strip()
        assert token.startswith("st_")
        assert oct((tmp_path / "outputs" / ".admin-token").stat().st_mode & 0o777) == "0o600"
        work = tmp_path / "work"
        (work / "tests" / "data").mkdir(parents=True)
        shutil.copy(ROOT / "tests" / "data" / "coffee.jpg", work / "tests" / "data" / "coffee.jpg")
        os.symlink(tmp_path / "outputs", work / "outputs")       # `cat outputs/.admin-token` as in a checkout
        env = {**os.environ, "API": api.url, "OUT": str(tmp_path / "dl")}
        (tmp_path / "dl").mkdir()
        env.pop("TOKEN", None)
        res = subprocess.run(["bash", "-euo", "pipefail", "-c", _example()], cwd=work, env=env,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        lines = res.stdout.split()
        assert lines[0] == "8"                                   # the ledger's frames
        assert float(lines[1]) > 0                               # its estimate
        assert (tmp_path / "dl" / "clip.mp4").read_bytes()[4:8] == b"ftyp"
        assert not (work / "clip.mp4").exists()                 # nothing written where it runs
        assert "queued" in lines or "running" in lines or "done" in lines
        job_line = [x for x in lines if re.fullmatch(r"[0-9a-f]{12}", x)]
        assert job_line, res.stdout                               # the post job names its input by id
        assert any(x.endswith(".mp4") for x in lines)
        assert re.search(r'studio_jobs_submitted_total\{kind="generate"\} 1\.0', res.stdout)
        assert re.search(r'studio_jobs_submitted_total\{kind="post"\} 1\.0', res.stdout)
    finally:
        api.stop()
