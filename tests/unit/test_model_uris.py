"""The model URI a run records, and the URI of the version it scored with."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollrisk.storage.registry import recorded_model_uri, scored_model_uri


def test_an_alias_is_read_as_the_version_that_scored() -> None:
    """`rollrisk report` loaded the model the alias named at report time: after a promotion
    it explained v1's scores with v3 (a helper's page: base 18.3% and a calibration step of
    +15.7 pp where v1 gives 10.5% and -12.4 pp)."""
    assert scored_model_uri("models:/rr@champion", "1") == "models:/rr/1"
    assert scored_model_uri("models:/rr/4", "4") == "models:/rr/4"
    for unpinned in ("unregistered", None, ""):  # a folder or run URI: no version to pin
        assert scored_model_uri("models:/rr@champion", unpinned) == "models:/rr@champion"
    assert scored_model_uri("runs:/abc/model", "unregistered") == "runs:/abc/model"
    assert scored_model_uri("/models/m", "unregistered") == "/models/m"


def test_a_model_folder_is_recorded_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative folder was recorded as given, so `rollrisk report` run from another folder
    could not find the model."""
    monkeypatch.chdir(tmp_path)
    assert recorded_model_uri("modeldir") == str(tmp_path / "modeldir")
    assert recorded_model_uri("../m") == str((tmp_path / "../m").resolve())
    for kept in ("models:/rr@champion", "runs:/abc/model", "s3://bucket/m", "file:///m",
                 str(tmp_path / "m")):  # fmt: skip
        assert recorded_model_uri(kept) == kept
