"""An output that cannot be written where it is given is refused before anything runs, in one
line naming it: a file given where a job writes a folder, a file among the folders above an
output (the jobs said "Not a directory: afile/rejects.csv" or "File exists: afile")."""

from __future__ import annotations

import pytest

from rollrisk.cli import main


@pytest.mark.parametrize(
    "argv",
    [
        ["train"],
        ["evaluate", "--model", "models:/m@champion"],
        ["monitor", "--model", "models:/m@champion"],
        ["score", "--model", "models:/m@champion"],
        ["simulate-policy", "--scores", "nowhere"],
    ],
    ids=lambda argv: argv[0],
)
def test_a_file_given_for_an_output_folder_is_refused_first(tmp_path, capsys, argv) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main([*argv, "--data", str(tmp_path / "portfolio"), "--out", str(afile)]) == 2
    err = capsys.readouterr().err
    assert f"--out {afile} exists and is not a folder: give a folder" in err, err
    assert afile.read_text() == "x"


def test_a_file_above_an_output_is_refused_first(tmp_path, capsys) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = afile / "ts.parquet"
    argv = ["build-training-set", "--data", str(tmp_path / "portfolio"), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: {afile} is a file, not a folder, so nothing can be written there" in err
