"""Inference threads sized for the box (threads: 0): the cores shared out over every camera's
models, never the runtimes' default of a machine-sized pool per model (issue 14)."""

from __future__ import annotations

import pytest

import edge.pipeline as pipeline
from edge.config import DetectorConfig, FusionConfig, FusionModelConfig
from edge.pipeline import box_threads


@pytest.mark.parametrize(
    ("cores", "cameras", "models", "threads"),
    [(2, 1, 2, 1), (2, 4, 2, 1), (8, 1, 2, 4), (8, 2, 1, 4), (16, 4, 2, 2), (1, 1, 1, 1)],
)
def test_the_cores_are_shared_out_over_every_camera_s_models(cores, cameras, models, threads):
    assert box_threads(cameras, models, cores) == threads


def test_the_service_s_detectors_get_the_box_s_share_unless_the_config_sets_threads(
    monkeypatch, models_dir
):
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(models_dir))
    made = []
    monkeypatch.setattr(pipeline, "create_detector", lambda settings: made.append(settings))
    monkeypatch.setattr(pipeline, "FusedDetector", lambda *a, **k: None)
    monkeypatch.setattr(pipeline, "box_threads", lambda cameras, models: 10 * cameras + models)
    fused = DetectorConfig(
        provider="cpu",
        fusion=FusionConfig(models=[FusionModelConfig(model="person-detection-retail-0013")]),
    )
    pipeline.build_detector(fused, cameras=4)
    assert [s.threads for s in made] == [42, 42]  # 4 cameras, 2 models each
    made.clear()
    pipeline.build_detector(DetectorConfig(provider="cpu", threads=3), cameras=4)
    assert {s.threads for s in made} == {3}  # what the config says stands, for every model
