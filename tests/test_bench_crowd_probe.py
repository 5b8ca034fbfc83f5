"""Keeps bench/crowd_probe.py (the dense-queue probe of issue #11) from rotting.

Not the probe: its quick path on 3 frames a set, enough to see that every table is built from
cached model passes, that a second run reads the cache instead of running the models, and that
the probe's replay of the cached passes (merge, stitch, fusion, zone) gives exactly the boxes the
product's own detector gives on the same frame: the probe must measure the product's path.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

from bench import crowd_probe
from edge.config import DetectorConfig, FusionConfig, FusionModelConfig
from edge.pipeline import build_detector

TABLES = ("a. Head recall", "b. Fused per-frame count", "c. Soft counting", "d. NMS IoU")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, data_dir, models_dir):
    """The quick path run twice on one cache: (cache folder, first output, second output)."""
    if not (data_dir / "brt_cam1").exists():
        pytest.skip(f"BRT stills not found at {data_dir / 'brt_cam1'}")
    cache = tmp_path_factory.mktemp("crowd-cache")
    argv = ["--quick", "--cache", str(cache), "--data", str(data_dir)]
    outputs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOBBYWATCH_MODELS", str(models_dir))
        for _ in range(2):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                assert crowd_probe.main(argv) == 0
            outputs.append(out.getvalue())
    return cache, outputs[0], outputs[1]


def test_the_quick_run_prints_every_table_and_reruns_from_the_cache(quick_run):
    cache, first, second = quick_run
    for title in TABLES:
        assert title in first
    assert "fitted default (shipped)" in first
    assert "yolox full+1x2 · retail 1x3 (6)" in first  # the shipped layouts on a portrait frame
    assert not any("nan" in row.split() or "nan%" in row for row in table_rows(first))
    assert list(Path(cache).glob("*.npz"))
    ran = first.split("model passes run this time:")[1]
    assert "passes" in ran
    # The second run finds every pass in the cache: no model runs, the same tables.
    assert "passes" not in second.split("model passes run this time:")[1]
    assert table_rows(second) == table_rows(first)


def table_rows(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("|")]


@pytest.mark.parametrize("third", [False, True], ids=["default", "with-pvb"])
@pytest.mark.parametrize("split", ["brt-train", "mall"])
def test_the_replay_gives_the_product_detectors_boxes(
    quick_run, data_dir, models_dir, monkeypatch, split, third
):
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(models_dir))
    cache_dir, _, _ = quick_run
    members = [FusionModelConfig(model=crowd_probe.RETAIL)]
    if third:
        members.append(FusionModelConfig(model=crowd_probe.PVB))
    config = DetectorConfig(threads=2, provider="cpu", fusion=FusionConfig(models=members))
    still = crowd_probe.load_stills(data_dir, limit=3)[split][0]
    cache = crowd_probe.CandidateCache(cache_dir, threads=2)
    combo = crowd_probe.combo("under test", config)
    crowd_probe.prepare(cache, [combo], [still])  # cached by the quick run: no model runs
    assert cache.timings == []

    replayed = crowd_probe.fused_boxes(cache, combo, still)
    replayed = replayed[np.flatnonzero(replayed.confidence >= config.confidence)]
    product = build_detector(config).detect(crowd_probe.read_image(still))
    product = crowd_probe.in_zone(product, still)

    assert len(replayed) == len(product) > 0
    order_r, order_p = np.argsort(-replayed.confidence), np.argsort(-product.confidence)
    np.testing.assert_allclose(replayed.confidence[order_r], product.confidence[order_p], atol=1e-4)
    np.testing.assert_allclose(replayed.xyxy[order_r], product.xyxy[order_p], atol=1e-2)


def test_the_calibration_is_monotone_and_fills_empty_bins():
    scores = np.array([0.03, 0.03, 0.11, 0.11, 0.45, 0.8], dtype=np.float32)
    person = np.array([True, False, False, False, True, True])
    p = crowd_probe.fit_bins([crowd_probe.Scored(scores, person, 3)])
    assert len(p) == len(crowd_probe.SOFT_EDGES) - 1
    assert (np.diff(p) >= 0).all()
    assert p[0] == pytest.approx(0.25)  # 0.5 at 0.02-0.04 pooled with 0.0 at 0.1-0.125
    assert p[-1] == 1.0
