"""What the demo echoes of the commands it runs, and what it leaves behind."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from vox2vec_nnunet.demo import ECHO_WIDTH, Demo, DemoSettings


def test_long_progress_lines_are_wrapped_whole_and_temporary_folders_removed(tmp_path, capsys):
    demo = Demo(DemoSettings(workspace=tmp_path / "demo"))
    words = " ".join(f"case_{i:03d}" for i in range(60))
    # data workers share tensors through a socket in the temporary folder: its path must stay short
    script = ("import multiprocessing.util, os; multiprocessing.util.get_temp_dir(); "
              "from multiprocessing.connection import Listener; Listener(family='AF_UNIX').close(); "
              f"print('Summary: 25 prepared {words} end'); print('noise')")
    temporary = set(Path(tempfile.gettempdir()).glob("vox2vec-demo-*"))
    demo.run("echo", [sys.executable, "-c", script])
    echoed = [line for line in capsys.readouterr().out.splitlines()[2:]]
    assert echoed[0].startswith("  Summary: 25 prepared case_000")
    assert all(len(line) <= ECHO_WIDTH for line in echoed)
    assert " ".join(line.strip() for line in echoed) == f"Summary: 25 prepared {words} end"
    assert "noise" in (tmp_path / "demo" / "logs" / "echo.log").read_text()
    assert set(Path(tempfile.gettempdir()).glob("vox2vec-demo-*")) == temporary  # removed after the command
