"""Ray, Triton and FastAPI stay out of `import` until asked for; without them the error names the extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.test_import_hygiene import BLOCKER, assert_import_without_heavy_packages

MODULES = ["u2deploy.scale", "u2deploy.scale.ray_data", "u2deploy.scale.ray_serve", "u2deploy.scale.triton_python",
           "u2deploy.export.triton", "u2deploy.cli._ray_predict", "u2deploy.cli._ray_serve"]  # fmt: skip


#: only this issue's optional packages missing (export itself needs torch)
SCALE_BLOCKER = BLOCKER.split("BLOCKED = {")[0] + 'BLOCKED = {"ray", "tritonclient", "pyarrow"}\n' + \
    BLOCKER.split("}", 1)[1]  # fmt: skip


def _run(code: str, blocker: str = BLOCKER) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", blocker + textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_scale_modules_import_without_ray_triton_or_heavy_packages():
    assert '"ray"' in BLOCKER  # the hygiene blocker really blocks this optional packages
    assert_import_without_heavy_packages(MODULES)


def test_missing_ray_and_tritonclient_are_one_line_errors_naming_the_extra():
    result = _run("""
        import tempfile
        from PIL import Image
        from u2deploy.cli import main
        folder = tempfile.mkdtemp()
        Image.new("RGB", (8, 8)).save(folder + "/a.png")
        code = main(["predict", "u2net", folder, "-o", folder + "/out", "--ray"])
        code2 = main(["export", "u2net", "--fmt", "triton", "-o", folder + "/repo/"])
        print("codes", code, code2)
    """, SCALE_BLOCKER)
    assert "codes 1 1" in result.stdout, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 2 and "Traceback" not in result.stderr
    assert "pip install 'u2deploy[ray]'" in errors[0] and "pip install 'u2deploy[triton]'" in errors[1]
