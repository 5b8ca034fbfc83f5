"""Person detection: settings, provider choice, letterbox, decoding and tile merging.

Pure tests with synthetic tensors and a fake detect function; the real weights are exercised in
test_detect_models.py.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.detect import (
    DetectorSettings,
    Normalization,
    ProviderNotAvailableError,
    TilingSettings,
    select_providers,
)
from edge.detect.decode import (
    decode_boxes,
    decode_ssd,
    decode_ultralytics,
    decode_yolox,
    nms,
    to_detections,
    yolox_grid,
)
from edge.detect.letterbox import PAD_VALUE, compute_letterbox, letterbox_into
from edge.detect.onnx import provider_options
from edge.detect.openvino_yolox import frame_input_size
from edge.detect.tensor import fill_tensor
from edge.detect.tiling import (
    ModelInput,
    Window,
    detect_tiled,
    fit_grid,
    merge_passes,
    tile_windows,
)
from edge.types import Detections

TRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
OV = "OpenVINOExecutionProvider"
CPU = "CPUExecutionProvider"
AZURE = "AzureExecutionProvider"


def _settings(**changes: Any) -> DetectorSettings:
    values: dict[str, Any] = {
        "model_path": Path("yolox_nano.onnx"),
        "family": "yolox",
        "input_size": (416, 416),
    }
    values.update(changes)
    return DetectorSettings(**values)


def _dets(boxes: list[list[int]] | list[list[float]], scores: list[float]) -> Detections:
    return Detections(
        xyxy=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        confidence=np.asarray(scores, dtype=np.float32),
        class_id=np.zeros(len(scores), dtype=np.int32),
    )


# --- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"confidence": -0.1}, "confidence must be in"),
        ({"confidence": 1.5}, "confidence must be in"),
        ({"nms_iou": 1.2}, "nms_iou must be in"),
        ({"input_size": (0, 416)}, "input_size must be two integers"),
        ({"input_size": (400, 416)}, "multiples of 32"),
        ({"family": "yolov5"}, "family must be one of"),
        ({"provider": "gpu"}, "provider must be one of"),
        ({"threads": -1}, "threads must be"),
        ({"person_class_id": -1}, "person_class_id must be"),
        ({"model_path": Path("yolox.pt")}, "must be a .onnx or .xml file"),
        ({"model_path": Path("yolox.xml"), "provider": "cuda"}, "cannot run an OpenVINO model"),
        (
            {"family": "openvino_ssd", "model_path": Path("m.xml"), "input_size": (544, 320)},
            "background label",
        ),
        (
            {
                "family": "openvino_ssd",
                "model_path": Path("m.xml"),
                "input_size": (544, 320),
                "person_class_id": 1,
                "provider": "cuda",
            },
            "not available for openvino_ssd",
        ),
        (
            {"family": "openvino_boxes", "model_path": Path("m.onnx"), "input_size": (448, 256)},
            "must be a .xml file",
        ),
        (
            {
                "family": "openvino_boxes",
                "model_path": Path("m.xml"),
                "input_size": (448, 256),
                "provider": "tensorrt",
            },
            "not available for openvino_boxes",
        ),
        (
            {
                "family": "openvino_ssd",
                "model_path": Path("m.xml"),
                "input_size": (544, 320),
                "person_class_id": 1,
                "normalization": Normalization("rgb"),
            },
            "defines its own input",
        ),
        ({"frame_sized": True, "provider": "cuda"}, "cannot reshape a model"),
        ({"frame_sized": 1}, "frame_sized must be true or false"),
        (
            {"family": "ultralytics", "model_path": Path("m.onnx"), "frame_sized": True},
            "frame_sized is for the yolox family",
        ),
    ],
)
def test_bad_detector_settings_raise_value_error_naming_the_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _settings(**changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"grid": (0, 2)}, "tiling.grid must be"),
        ({"grid": (2, 0)}, "tiling.grid must be"),
        ({"grid": (2,)}, "tiling.grid must be"),
        ({"overlap": 0.9}, "tiling.overlap must be in"),
        ({"overlap": -0.1}, "tiling.overlap must be in"),
        ({"grid": (1, 1), "full_frame": True}, "runs the same pass twice"),
    ],
)
def test_bad_tiling_settings_raise_value_error_naming_the_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TilingSettings(**changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"channels": "hsv"}, "channels must be 'bgr' or 'rgb'"),
        ({"mean": (1.0, 2.0)}, "mean must be three numbers"),
        ({"mean": (0.0, math.nan, 0.0)}, "mean must be three numbers"),
        ({"std": (1.0, True, 1.0)}, "std must be three numbers"),
        ({"std": (58.0, 0.0, 57.0)}, "std must be > 0"),
    ],
)
def test_bad_normalization_raises_value_error_naming_the_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Normalization(**changes)


def test_each_family_keeps_its_own_input_unless_the_settings_give_one() -> None:
    imagenet = Normalization("rgb", [123.675, 116.28, 103.53], [58.395, 57.12, 57.375])
    assert imagenet.mean == (123.675, 116.28, 103.53)  # lists from YAML become tuples
    assert _settings().pixels == Normalization("bgr")
    assert _settings(normalization=imagenet).pixels == imagenet
    assert _settings(family="ultralytics").pixels == Normalization("rgb", std=(255.0,) * 3)


def test_valid_settings_keep_their_values_and_accept_a_str_path() -> None:
    settings = _settings(model_path="models/yolox_nano.onnx", tiling=TilingSettings(grid=(3, 2)))
    assert settings.model_path == Path("models/yolox_nano.onnx")
    assert settings.tiling is not None
    assert settings.tiling.passes == 7


def test_lists_from_yaml_become_tuples() -> None:
    loaded: dict[str, Any] = {"grid": [3, 2]}
    assert TilingSettings(**loaded).grid == (3, 2)
    assert _settings(input_size=[416, 256]).input_size == (416, 256)


# --- execution providers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "available", "expected"),
    [
        ("auto", [AZURE, CPU], [CPU]),
        ("auto", [], [CPU]),
        ("auto", [TRT, CUDA, CPU], [TRT, CUDA, CPU]),
        ("auto", [CPU, CUDA, TRT], [TRT, CUDA, CPU]),
        ("auto", [CUDA, CPU], [CUDA, CPU]),
        ("auto", [OV, CPU], [OV, CPU]),
        ("auto", [TRT, CUDA, OV, CPU], [TRT, CUDA, OV, CPU]),
        ("tensorrt", [TRT, CUDA, CPU], [TRT, CUDA, CPU]),
        ("tensorrt", [TRT, CPU], [TRT, CPU]),
        ("cuda", [TRT, CUDA, CPU], [CUDA, CPU]),
        ("openvino", [OV, CPU], [OV, CPU]),
        ("cpu", [TRT, CUDA, CPU], [CPU]),
        ("cpu", [], [CPU]),
    ],
)
def test_select_providers_prefers_tensorrt_cuda_openvino_and_ends_with_cpu(
    requested: str, available: list[str], expected: list[str]
) -> None:
    assert select_providers(requested, available) == expected


@pytest.mark.parametrize(
    ("requested", "available"),
    [("tensorrt", [AZURE, CPU]), ("cuda", [TRT, CPU]), ("openvino", [CUDA, CPU])],
)
def test_forcing_a_missing_provider_raises_naming_the_installed_ones(
    requested: str, available: list[str]
) -> None:
    with pytest.raises(ProviderNotAvailableError, match=requested) as caught:
        select_providers(requested, available)
    assert all(name in str(caught.value) for name in available)


def test_an_unknown_provider_name_raises_value_error() -> None:
    with pytest.raises(ValueError, match="provider must be one of"):
        select_providers("gpu", [CPU])


def test_tensorrt_gets_an_engine_cache_only_when_a_cache_dir_is_set(tmp_path: Path) -> None:
    options = provider_options(TRT, tmp_path)
    assert options["trt_engine_cache_enable"] is True
    assert options["trt_engine_cache_path"] == str(tmp_path)
    assert provider_options(TRT, None) == {}
    assert provider_options(CPU, tmp_path) == {}


# --- letterbox -----------------------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=4000)
model_sides = st.integers(min_value=1, max_value=40).map(lambda n: 32 * n)


@st.composite
def boxes_in(draw: st.DrawFn, width: int, height: int) -> list[float]:
    x0 = draw(st.floats(0, width))
    y0 = draw(st.floats(0, height))
    return [x0, y0, draw(st.floats(x0, width)), draw(st.floats(y0, height))]


@given(data=st.data(), w=sizes, h=sizes, tw=model_sides, th=model_sides, centred=st.booleans())
def test_letterbox_round_trip_returns_the_source_box(
    data: st.DataObject, w: int, h: int, tw: int, th: int, centred: bool
) -> None:
    box = compute_letterbox((w, h), (tw, th), centred=centred)
    source = np.asarray([data.draw(boxes_in(w, h))], dtype=np.float32)
    back = box.to_source(box.to_input(source))
    np.testing.assert_allclose(back, source, rtol=1e-4, atol=1e-3 * max(w, h) / min(tw, th))


@given(w=sizes, h=sizes, tw=model_sides, th=model_sides, centred=st.booleans())
def test_letterbox_places_the_whole_image_inside_the_model_input(
    w: int, h: int, tw: int, th: int, centred: bool
) -> None:
    box = compute_letterbox((w, h), (tw, th), centred=centred)
    x0, y0, x1, y1 = box.to_input(np.asarray([[0, 0, w, h]], dtype=np.float32))[0]
    assert x0 >= 0 and y0 >= 0
    assert x1 <= tw + 1 and y1 <= th + 1  # +1: the resized size is rounded to whole pixels
    # The image fills the input along at least one axis: no upscale is left on the table.
    assert box.resized[0] == tw or box.resized[1] == th
    if not centred:
        assert (box.pad_x, box.pad_y) == (0, 0)


@pytest.mark.parametrize(("centred", "top_left"), [(False, (0, 0)), (True, (0, 52))])
def test_letterbox_into_pads_with_grey_at_the_side_the_family_expects(
    centred: bool, top_left: tuple[int, int]
) -> None:
    image = np.full((300, 400, 3), 7, dtype=np.uint8)  # 4:3 into 416x416 -> 416x312 + 104 pad
    canvas = np.zeros((416, 416, 3), dtype=np.uint8)
    box = letterbox_into(image, canvas, centred=centred)
    assert box.resized == (416, 312)
    assert (box.pad_x, box.pad_y) == top_left
    rows = np.flatnonzero((canvas == 7).all(axis=(1, 2)))
    assert (rows[0], rows[-1]) == (top_left[1], top_left[1] + 311)
    assert (np.delete(canvas, rows, axis=0) == PAD_VALUE).all()


# --- input tensor --------------------------------------------------------------------------


def _canvas() -> npt.NDArray[np.uint8]:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(64, 96, 3), dtype=np.uint8)


def test_the_family_inputs_are_bit_for_bit_what_the_detectors_always_fed() -> None:
    canvas = _canvas()
    chw = canvas.transpose(2, 0, 1).astype(np.float32)
    yolox = np.empty((1, 3, 64, 96), dtype=np.float32)
    fill_tensor(canvas, yolox, _settings().pixels)
    assert np.array_equal(yolox[0], chw)  # BGR, 0-255
    ultralytics = np.empty_like(yolox)
    fill_tensor(canvas, ultralytics, _settings(family="ultralytics").pixels)
    assert np.array_equal(ultralytics[0], chw[::-1] * np.float32(1.0 / 255.0))


def test_an_imagenet_normalization_swaps_to_rgb_and_standardizes_each_channel() -> None:
    canvas = _canvas()
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    tensor = np.empty((1, 3, 64, 96), dtype=np.float32)
    fill_tensor(canvas, tensor, Normalization("rgb", mean, std))
    rgb = canvas[:, :, ::-1].astype(np.float64) / 255.0
    expected = (rgb - np.array(mean) / 255.0) / (np.array(std) / 255.0)
    np.testing.assert_allclose(tensor[0], expected.transpose(2, 0, 1), atol=1e-5)


@pytest.mark.parametrize(
    ("image", "longest", "expected"),
    [
        ((640, 480), 1088, (640, 480)),  # Mall: already multiples of 32
        ((360, 640), 1088, (384, 640)),  # BRT portrait: padded, not letterboxed into landscape
        ((810, 1080), 1088, (832, 1088)),  # bus.jpg
        ((1280, 720), 1088, (1088, 640)),  # longer side capped, then rounded up
        ((1920, 1080), 1088, (1088, 640)),
        ((1080, 1920), 1088, (640, 1088)),
        ((10, 5), 1088, (32, 32)),
    ],
)
def test_a_frame_sized_input_is_the_image_rounded_up_to_32_its_longer_side_capped(
    image: tuple[int, int], longest: int, expected: tuple[int, int]
) -> None:
    assert frame_input_size(image, longest) == expected


@given(st.integers(1, 4000), st.integers(1, 4000), st.sampled_from([416, 640, 1088]))
def test_a_frame_sized_input_holds_the_image_with_under_32_pixels_of_padding(
    width: int, height: int, longest: int
) -> None:
    w, h = frame_input_size((width, height), longest)
    assert w % 32 == 0 and h % 32 == 0
    assert max(w, h) <= math.ceil(longest / 32) * 32
    scale = min(1.0, longest / max(width, height))
    assert 0 <= w - max(1, round(width * scale)) < 32
    assert 0 <= h - max(1, round(height * scale)) < 32


# --- decoding ------------------------------------------------------------------------------


def test_yolox_grid_lists_cells_stride_by_stride_row_major() -> None:
    grid = yolox_grid((416, 416))
    assert grid.shape == (52 * 52 + 26 * 26 + 13 * 13, 3)
    assert grid[0].tolist() == [0, 0, 8]
    assert grid[1].tolist() == [1, 0, 8]
    assert grid[52].tolist() == [0, 1, 8]
    assert grid[52 * 52].tolist() == [0, 0, 16]
    assert grid[-1].tolist() == [12, 12, 32]


def test_yolox_single_cell_decodes_to_its_box_in_input_pixels() -> None:
    grid = yolox_grid((416, 416))
    raw = np.zeros((len(grid), 85), dtype=np.float32)
    cell = 52 * 52 + 5 * 26 + 3  # stride 16, grid x 3, y 5
    raw[cell, :5] = [0.5, 0.5, math.log(2.0), math.log(4.0), 0.9]
    raw[cell, 5] = 0.8  # person
    other = 100
    raw[other, 4], raw[other, 5 + 2] = 0.99, 0.99  # a confident car: not a person
    found = decode_yolox(raw, grid, person_class_id=0, confidence=0.25)
    # centre ((3 + 0.5) * 16, (5 + 0.5) * 16) = (56, 88); size (2 * 16, 4 * 16) = (32, 64)
    np.testing.assert_allclose(found.xyxy, [[40, 56, 72, 120]], atol=1e-4)
    np.testing.assert_allclose(found.scores, [0.72], atol=1e-6)


def test_yolox_output_that_does_not_match_the_grid_is_refused() -> None:
    with pytest.raises(ValueError, match="grid has"):
        decode_yolox(np.zeros((10, 85), np.float32), yolox_grid((416, 416)), 0, 0.25)


def test_ultralytics_single_column_decodes_to_its_box_in_input_pixels() -> None:
    raw = np.zeros((84, 10), dtype=np.float32)
    raw[:5, 3] = [100, 50, 20, 40, 0.9]
    raw[:4, 6], raw[4 + 2, 6] = [300, 300, 50, 50], 0.95  # a car
    raw[:5, 8] = [10, 10, 4, 4, 0.1]  # below the threshold
    found = decode_ultralytics(raw, person_class_id=0, confidence=0.25)
    np.testing.assert_allclose(found.xyxy, [[90, 30, 110, 70]])
    np.testing.assert_allclose(found.scores, [0.9])


def test_ssd_rows_keep_valid_confident_person_rows_in_normalized_coordinates() -> None:
    raw = np.array(
        [
            [0, 1, 0.9, 0.1, 0.2, 0.3, 0.8],  # person
            [0, 1, 0.1, 0.1, 0.2, 0.3, 0.8],  # too weak
            [0, 0, 0.9, 0.1, 0.2, 0.3, 0.8],  # background label
            [-1, 1, 0.9, 0.5, 0.5, 0.6, 0.6],  # after the end marker
        ],
        dtype=np.float32,
    )
    found = decode_ssd(raw, person_class_id=1, confidence=0.25)
    np.testing.assert_allclose(found.xyxy, [[0.1, 0.2, 0.3, 0.8]])


def test_boxes_output_keeps_confident_person_labels_in_input_pixels() -> None:
    boxes = np.array(
        [
            [10, 20, 50, 120, 0.9],  # person
            [60, 20, 90, 120, 0.2],  # person, below the threshold
            [0, 0, 200, 100, 0.95],  # vehicle
            [100, 30, 130, 90, 0.5],  # bike
        ],
        dtype=np.float32,
    )
    labels = np.array([1, 1, 0, 2], dtype=np.int64)
    found = decode_boxes(boxes, labels, person_class_id=1, confidence=0.3)
    assert found.xyxy.tolist() == [[10, 20, 50, 120]]
    assert found.scores.tolist() == pytest.approx([0.9])
    with pytest.raises(ValueError, match="5 boxes but 4 labels"):
        decode_boxes(np.vstack([boxes, boxes[:1]]), labels, 1, 0.3)


def test_to_detections_clips_drops_outside_boxes_and_suppresses_overlaps() -> None:
    xyxy = np.array(
        [[-10, 5, 50, 120], [-8, 6, 52, 118], [200, 10, 260, 90], [700, 0, 800, 50]],
        dtype=np.float32,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.95], dtype=np.float32)
    found = to_detections(xyxy, scores, (640, 100), nms_iou=0.45, class_id=0)
    assert found.xyxy.tolist() == [[0, 5, 50, 100], [200, 10, 260, 90]]
    assert found.xyxy.dtype == np.float32 and found.class_id.dtype == np.int32
    np.testing.assert_allclose(found.confidence, [0.9, 0.7])


def test_nms_of_nothing_is_nothing() -> None:
    empty = np.zeros((0, 4), dtype=np.float32)
    assert nms(empty, np.zeros(0, dtype=np.float32), 0.5).shape == (0,)


# --- tiling --------------------------------------------------------------------------------


@given(
    width=st.integers(16, 2000),
    height=st.integers(16, 2000),
    columns=st.integers(1, 4),
    rows=st.integers(1, 4),
    overlap=st.floats(0.0, 0.5),
)
def test_tiles_cover_the_frame_and_share_the_overlap(
    width: int, height: int, columns: int, rows: int, overlap: float
) -> None:
    tiles = tile_windows(width, height, (columns, rows), overlap)
    assert len(tiles) == columns * rows
    xs = sorted({(t.x0, t.x1) for t in tiles})
    ys = sorted({(t.y0, t.y1) for t in tiles})
    for spans, length in ((xs, width), (ys, height)):
        assert spans[0][0] == 0 and spans[-1][1] == length
        size = length / (len(spans) - (len(spans) - 1) * overlap)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start <= end, "a gap between neighbouring tiles"
            assert abs((end - start) - overlap * size) <= 2
        assert all(abs((e - s) - size) <= 2 for s, e in spans)


FRAME = Window(0, 0, 640, 480)
LEFT_TOP = Window(0, 0, 356, 267)
RIGHT_TOP = Window(284, 0, 640, 267)


def test_a_person_cut_by_a_tile_edge_merges_into_the_full_frame_box() -> None:
    person = [300, 100, 400, 260]
    fragment = [300, 102, 356, 258]  # left tile: ends on its inner right edge x = 356
    merged = merge_passes(
        [(FRAME, _dets([person], [0.6])), (LEFT_TOP, _dets([fragment], [0.9]))],
        (640, 480),
        nms_iou=0.45,
    )
    assert merged.xyxy.tolist() == [person]


def test_a_person_whole_in_one_tile_drops_the_fragment_in_its_neighbour() -> None:
    person = [270, 100, 330, 200]  # whole in the left tile, cut by the right tile's edge
    fragment = [284, 101, 330, 199]  # right tile: starts on its inner left edge x = 284
    merged = merge_passes(
        [(LEFT_TOP, _dets([person], [0.5])), (RIGHT_TOP, _dets([fragment], [0.8]))],
        (640, 480),
        nms_iou=0.45,
    )
    assert merged.xyxy.tolist() == [person]


def test_the_same_person_boxed_differently_by_two_passes_counts_once() -> None:
    whole = [100, 50, 140, 150]
    torso = [104, 52, 138, 110]  # mostly inside `whole`, low IoU, not at a tile edge
    merged = merge_passes(
        [(FRAME, _dets([whole], [0.7])), (LEFT_TOP, _dets([torso], [0.6]))],
        (640, 480),
        nms_iou=0.45,
    )
    assert merged.xyxy.tolist() == [whole]


def test_people_one_inside_anothers_box_in_the_same_pass_are_both_kept() -> None:
    adult = [100, 50, 160, 200]
    child = [110, 120, 140, 195]  # fully inside the adult's box: the model kept both
    merged = merge_passes([(FRAME, _dets([adult, child], [0.8, 0.7]))], (640, 480), 0.45)
    assert len(merged) == 2


def _find_white(image: npt.NDArray[np.uint8]) -> Detections:
    """A stand-in model: the bounding box of the white pixels, in pixels of the image it gets."""
    ys, xs = np.nonzero(image[:, :, 0] == 255)
    if len(xs) == 0:
        return Detections.empty()
    return _dets([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], [0.9])


@pytest.mark.parametrize(
    ("rect", "full_frame"),
    [
        ((250, 100, 400, 300), True),  # crosses both inner edges: the full pass sees it whole
        ((20, 30, 60, 120), True),  # inside the top-left tile only
        ((20, 30, 60, 120), False),
        ((300, 350, 340, 420), True),  # inside the overlap of the two bottom tiles
        ((300, 350, 340, 420), False),
        ((330, 240, 370, 300), False),  # narrower than the overlap, cut in both directions
    ],
)
def test_tiled_detection_returns_each_object_once_in_frame_pixels(
    rect: tuple[int, int, int, int], full_frame: bool
) -> None:
    x0, y0, x1, y1 = rect
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    image[y0:y1, x0:x1] = 255
    tiling = TilingSettings(grid=(2, 2), overlap=0.2, full_frame=full_frame)
    found = detect_tiled(image, _find_white, tiling, nms_iou=0.45)
    assert found.xyxy.tolist() == [list(map(float, rect))]


def test_tiled_detection_calls_the_model_once_per_tile_and_once_for_the_frame() -> None:
    shapes: list[tuple[int, ...]] = []

    def record(image: npt.NDArray[np.uint8]) -> Detections:
        shapes.append(image.shape)
        return Detections.empty()

    image = np.zeros((480, 640, 3), dtype=np.uint8)
    found = detect_tiled(image, record, TilingSettings(grid=(2, 2)), nms_iou=0.45)
    assert len(found) == 0
    # 640 / (2 - 0.2) = 355.6 and 480 / 1.8 = 266.7 pixels per tile
    assert shapes == [(480, 640, 3)] + [(267, 356, 3)] * 4


YOLOX_INPUT = ModelInput((416, 416), letterboxed=True)
RETAIL_INPUT = ModelInput((544, 320), letterboxed=False)


@pytest.mark.parametrize(
    ("frame", "grid", "model", "fitted"),
    [
        ((640, 480), (2, 2), YOLOX_INPUT, (2, 2)),  # 4:3: the grid as written
        ((384, 288), (2, 2), YOLOX_INPUT, (2, 2)),
        ((360, 640), (2, 2), YOLOX_INPUT, (1, 2)),  # portrait: two columns enlarge no more
        ((1920, 1080), (2, 2), YOLOX_INPUT, (2, 1)),  # 16:9: two rows enlarge no more
        ((480, 640), (2, 2), YOLOX_INPUT, (2, 2)),  # 3:4: one column would shrink people
        ((640, 480), (1, 1), RETAIL_INPUT, (1, 1)),  # 1.33 in 1.7: a second row is worse
        ((1280, 720), (1, 1), RETAIL_INPUT, (1, 1)),
        ((360, 640), (1, 1), RETAIL_INPUT, (1, 3)),  # portrait: windows shaped like the input
        ((1000, 1000), (1, 1), RETAIL_INPUT, (1, 2)),  # a square (fisheye) frame
        ((360, 640), (2, 2), RETAIL_INPUT, (2, 6)),  # a configured grid gets rows added
    ],
)
def test_the_grid_is_fitted_to_the_frame_and_the_model(
    frame: tuple[int, int],
    grid: tuple[int, int],
    model: ModelInput,
    fitted: tuple[int, int],
) -> None:
    assert fit_grid(frame, grid, 0.2, model) == fitted


def test_a_resizing_model_sees_a_portrait_frame_in_windows_shaped_like_its_input() -> None:
    shapes: list[tuple[int, ...]] = []

    def record(image: npt.NDArray[np.uint8]) -> Detections:
        shapes.append(image.shape)
        return Detections.empty()

    whole = TilingSettings(grid=(1, 1), full_frame=False)
    detect_tiled(np.zeros((640, 360, 3), np.uint8), record, whole, 0.45, RETAIL_INPUT)
    # 640 / (3 - 2 * 0.2) = 246 rows each: 360 / 246 = 1.46 wide per high, the input 1.7
    assert shapes == [(246, 360, 3), (246, 360, 3), (246, 360, 3)]
    shapes.clear()
    detect_tiled(np.zeros((480, 640, 3), np.uint8), record, whole, 0.45, RETAIL_INPUT)
    assert shapes == [(480, 640, 3)]  # a 4:3 frame: one pass, as before
    shapes.clear()
    unfitted = TilingSettings(grid=(1, 1), full_frame=False, fit=False)
    detect_tiled(np.zeros((640, 360, 3), np.uint8), record, unfitted, 0.45, RETAIL_INPUT)
    assert shapes == [(640, 360, 3)]


def test_a_fitted_grid_still_runs_the_full_frame_pass() -> None:
    shapes: list[tuple[int, ...]] = []

    def record(image: npt.NDArray[np.uint8]) -> Detections:
        shapes.append(image.shape)
        return Detections.empty()

    detect_tiled(np.zeros((640, 360, 3), np.uint8), record, TilingSettings(), 0.45, YOLOX_INPUT)
    assert shapes == [(640, 360, 3), (356, 360, 3), (356, 360, 3)]  # 3 passes, not 5


@given(width=st.integers(1, 8), height=st.integers(1, 8), columns=st.integers(1, 4))
def test_frames_smaller_than_the_grid_still_get_non_empty_tiles_inside_the_frame(
    width: int, height: int, columns: int
) -> None:
    for tile in tile_windows(width, height, (columns, columns), 0.5):
        assert 0 <= tile.x0 < tile.x1 <= width and 0 <= tile.y0 < tile.y1 <= height


def _find_white_blobs(image: npt.NDArray[np.uint8]) -> Detections:
    """A stand-in model: one box per connected white region."""
    count, _, stats, _ = cv2.connectedComponentsWithStats((image[:, :, 0] == 255).astype(np.uint8))
    boxes = [[x, y, x + w, y + h] for x, y, w, h, _ in stats[1:count]]
    return _dets(boxes, [0.9] * len(boxes)) if boxes else Detections.empty()


@pytest.mark.parametrize(
    ("rects", "expected"),
    [
        # a person taller than the whole window overlap, cut by both borders: one, whole
        ([(150, 60, 230, 600)], [(150, 60, 230, 600)]),
        # cut by one border
        ([(40, 150, 100, 330)], [(40, 150, 100, 330)]),
        # two people side by side across a border share too little width to be one
        ([(40, 150, 100, 240), (110, 200, 170, 330)], [(40, 150, 100, 240), (110, 200, 170, 330)]),
        # one inside a window: untouched
        ([(200, 20, 260, 120)], [(200, 20, 260, 120)]),
    ],
)
def test_windows_without_a_full_frame_pass_stitch_a_person_cut_by_their_borders(
    rects: list[tuple[int, int, int, int]], expected: list[tuple[int, int, int, int]]
) -> None:
    image = np.zeros((640, 360, 3), dtype=np.uint8)
    for x0, y0, x1, y1 in rects:
        image[y0:y1, x0:x1] = 255
    windows = TilingSettings(grid=(1, 3), overlap=0.2, full_frame=False, fit=False)
    found = detect_tiled(image, _find_white_blobs, windows, nms_iou=0.45)
    assert sorted(map(tuple, found.xyxy.astype(int).tolist())) == sorted(expected)
