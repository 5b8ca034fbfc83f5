"""Person detection with the real weights on real photos and Mall frames.

The weights and images live outside the repository ($LOBBYWATCH_MODELS, $LOBBYWATCH_DATA); each
test skips, naming the missing file, where they are absent. The Ultralytics weights are AGPL and
used here only as a second family to check the decoder against.

Expected people (source pixels) were read off the photos: bus.jpg (810x1080) has three people
standing in front of the bus and a fourth cut off at the left edge; zidane.jpg (1280x720) has
Zidane left of centre and Ancelotti on the right.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from edge.detect import Detector, DetectorSettings, Normalization, TilingSettings, create_detector
from edge.detect.openvino_yolox import OpenVinoYoloxDetector
from edge.detect.settings import Family
from edge.types import Detections

BUS_PEOPLE = [(50, 395, 240, 905), (220, 405, 345, 857), (670, 380, 810, 880)]
BUS_CUT_OFF = (0, 555, 70, 875)
ZIDANE_HEADS = [(580, 300), (980, 160)]  # a point on each man's head

YOLO_MODELS: dict[str, tuple[str, Family, tuple[int, int]]] = {
    "yolox_nano": ("yolox_nano.onnx", "yolox", (416, 416)),
    "yolov8n_640": ("agpl/yolov8n_int8_dynamic.onnx", "ultralytics", (640, 640)),
    "yolo11n_320": ("agpl/yolo11n_int8_dynamic_320.onnx", "ultralytics", (320, 320)),
}
SSD_MODEL = "person-detection-retail-0013/FP32/person-detection-retail-0013.xml"
BOXES_MODEL = "person-vehicle-bike-detection-2004/FP16/person-vehicle-bike-detection-2004.xml"
BYTETRACK_MODEL = "bytetrack_nano_mot17/bytetrack_nano.onnx"
# ByteTrack's YOLOX input (its preproc): RGB / 255, then ImageNet mean and std; in pixel units.
IMAGENET = Normalization("rgb", (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))


def _model(models_dir: Path, relative: str) -> Path:
    path = models_dir / relative
    if not path.is_file():
        pytest.skip(f"model not found: {path}")
    return path


def _image(path: Path) -> npt.NDArray[np.uint8]:
    if not path.is_file():
        pytest.skip(f"test image not found: {path}")
    image = cv2.imread(str(path))
    assert image is not None, f"cannot decode {path}"
    return np.asarray(image, dtype=np.uint8)


def _yolo(models_dir: Path, name: str, **changes: Any) -> Detector:
    relative, family, size = YOLO_MODELS[name]
    settings = DetectorSettings(
        model_path=_model(models_dir, relative),
        family=family,
        input_size=size,
        threads=2,
        **changes,
    )
    return create_detector(settings)


def _need_openvino(what: str) -> None:
    try:
        import openvino  # noqa: F401
    except ImportError as exc:  # absent, or installed without its native libraries
        pytest.skip(f"{what} needs the openvino package: {exc}")


def _on_openvino(
    models_dir: Path, what: str, relative: str, family: Family, **values: Any
) -> Detector:
    """The detector for model `relative` on OpenVINO (skipped, naming `what`, where OpenVINO is
    missing); `values` are its DetectorSettings fields."""
    _need_openvino(what)
    settings = DetectorSettings(model_path=_model(models_dir, relative), family=family, **values)
    return create_detector(settings)


def _ssd(models_dir: Path, **changes: Any) -> Detector:
    values: dict[str, Any] = {"input_size": (544, 320), "person_class_id": 1, "threads": 2}
    return _on_openvino(
        models_dir, "family openvino_ssd", SSD_MODEL, "openvino_ssd", **{**values, **changes}
    )


@pytest.fixture(scope="module")
def bus(photos_dir: Path) -> npt.NDArray[np.uint8]:
    return _image(photos_dir / "bus.jpg")


@pytest.fixture(scope="module")
def zidane(photos_dir: Path) -> npt.NDArray[np.uint8]:
    return _image(photos_dir / "zidane.jpg")


@pytest.fixture(scope="module")
def mall_frame(data_dir: Path) -> npt.NDArray[np.uint8]:
    return _image(data_dir / "mall" / "frames" / "seq_000001.jpg")  # 29 people


def _iou(a: npt.NDArray[np.float32], b: tuple[int, int, int, int]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


def _matches(found: Detections, person: tuple[int, int, int, int]) -> int:
    return sum(_iou(box, person) >= 0.5 for box in found.xyxy)


def _assert_well_formed(found: Detections, image: npt.NDArray[np.uint8]) -> None:
    height, width = image.shape[:2]
    assert found.xyxy.dtype == np.float32 and found.class_id.dtype == np.int32
    assert (found.xyxy[:, :2] >= 0).all() and (found.xyxy[:, 2] <= width).all()
    assert (found.xyxy[:, 3] <= height).all()
    assert (found.xyxy[:, 2:] > found.xyxy[:, :2]).all()
    assert ((found.confidence >= 0) & (found.confidence <= 1)).all()


def _assert_zidane_heads(found: Detections) -> None:
    """Each man's head point inside exactly one box: both found, neither twice."""
    for x, y in ZIDANE_HEADS:
        inside = (found.xyxy[:, 0] <= x) & (x <= found.xyxy[:, 2])
        inside &= (found.xyxy[:, 1] <= y) & (y <= found.xyxy[:, 3])
        assert inside.sum() == 1, f"head at {(x, y)}: {found.xyxy.round().tolist()}"


def _assert_bus_people(found: Detections, bus: npt.NDArray[np.uint8]) -> None:
    _assert_well_formed(found, bus)
    for person in BUS_PEOPLE:
        assert _matches(found, person) == 1, f"person at {person}: {found.xyxy.round().tolist()}"
    aspect = (found.xyxy[:, 3] - found.xyxy[:, 1]) / (found.xyxy[:, 2] - found.xyxy[:, 0])
    assert ((aspect > 1.5) & (aspect < 7)).all(), "standing people are taller than wide"


# --- single pass ---------------------------------------------------------------------------


def test_yolox_finds_the_three_people_in_front_of_the_bus_at_0_3(
    models_dir: Path, bus: npt.NDArray[np.uint8]
) -> None:
    found = _yolo(models_dir, "yolox_nano", confidence=0.3).detect(bus)
    assert len(found) == 3
    _assert_bus_people(found, bus)


def test_yolox_also_finds_the_person_cut_off_at_the_left_edge_at_0_2(
    models_dir: Path, bus: npt.NDArray[np.uint8]
) -> None:
    found = _yolo(models_dir, "yolox_nano", confidence=0.2).detect(bus)  # scores it 0.26
    assert len(found) == 4
    _assert_bus_people(found, bus)
    assert _matches(found, BUS_CUT_OFF) == 1


@pytest.mark.parametrize("name", ["yolov8n_640", "yolo11n_320"])
def test_ultralytics_int8_models_find_the_bus_people(
    models_dir: Path, bus: npt.NDArray[np.uint8], name: str
) -> None:
    found = _yolo(models_dir, name, confidence=0.25).detect(bus)
    assert 3 <= len(found) <= 5
    _assert_bus_people(found, bus)


@pytest.mark.parametrize("name", list(YOLO_MODELS))
def test_yolo_models_find_both_men_in_zidane_in_source_pixels(
    models_dir: Path, zidane: npt.NDArray[np.uint8], name: str
) -> None:
    found = _yolo(models_dir, name, confidence=0.3).detect(zidane)
    assert len(found) == 2
    _assert_well_formed(found, zidane)
    _assert_zidane_heads(found)
    assert set(found.class_id.tolist()) == {0}


def test_detector_reports_the_provider_in_use(models_dir: Path) -> None:
    detector = _yolo(models_dir, "yolox_nano", provider="cpu")
    assert detector.provider == "CPUExecutionProvider"
    assert _yolo(models_dir, "yolox_nano").provider in ort.get_available_providers()


def test_an_image_with_nobody_gives_empty_detections(models_dir: Path) -> None:
    found = _yolo(models_dir, "yolox_nano").detect(np.full((480, 640, 3), 90, dtype=np.uint8))
    assert len(found) == 0 and found.xyxy.shape == (0, 4)


def test_settings_input_size_must_match_a_static_model_input(models_dir: Path) -> None:
    settings = DetectorSettings(
        model_path=_model(models_dir, "yolox_nano.onnx"), family="yolox", input_size=(320, 320)
    )
    with pytest.raises(ValueError, match=r"416x416.*320x320"):
        create_detector(settings)


def test_a_missing_model_file_raises_file_not_found_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    with pytest.raises(FileNotFoundError, match=r"nope\.onnx"):
        create_detector(DetectorSettings(missing, "yolox", (416, 416)))


def test_a_bad_image_is_refused(models_dir: Path) -> None:
    with pytest.raises(ValueError, match="BGR uint8"):
        _yolo(models_dir, "yolox_nano").detect(np.zeros((48, 64), dtype=np.uint8))


# --- tiling --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(YOLO_MODELS))
def test_tiled_detection_still_counts_the_bus_people_once(
    models_dir: Path, bus: npt.NDArray[np.uint8], name: str
) -> None:
    found = _yolo(models_dir, name, confidence=0.3, tiling=TilingSettings()).detect(bus)
    assert 3 <= len(found) <= 4
    _assert_bus_people(found, bus)


def test_tiling_finds_more_of_the_small_people_in_a_mall_frame(
    models_dir: Path, mall_frame: npt.NDArray[np.uint8]
) -> None:
    single = _yolo(models_dir, "yolox_nano", confidence=0.25).detect(mall_frame)
    tiled = _yolo(models_dir, "yolox_nano", confidence=0.25, tiling=TilingSettings())
    found = tiled.detect(mall_frame)
    _assert_well_formed(found, mall_frame)
    # Measured 20 single vs 24 tiled, against 29 people by ground truth.
    assert len(found) >= len(single) + 2
    assert len(found) <= 29 + 3


# --- OpenVINO SSD (optional extra) ---------------------------------------------------------


def test_openvino_ssd_finds_the_two_clear_bus_people(
    models_dir: Path, bus: npt.NDArray[np.uint8]
) -> None:
    detector = _ssd(models_dir, confidence=0.3)
    found = detector.detect(bus)
    _assert_well_formed(found, bus)
    assert set(found.class_id.tolist()) == {1}
    # The retail model, trained on overhead views, misses the man on the right in this photo.
    assert sum(_matches(found, person) for person in BUS_PEOPLE[:2]) == 2
    assert detector.provider.startswith("OpenVINO:")


def test_openvino_ssd_tiled_counts_a_mall_frame(
    models_dir: Path, mall_frame: npt.NDArray[np.uint8]
) -> None:
    single = _ssd(models_dir, confidence=0.25).detect(mall_frame)
    found = _ssd(models_dir, confidence=0.25, tiling=TilingSettings()).detect(mall_frame)
    _assert_well_formed(found, mall_frame)
    # Measured 21 single vs 23 tiled, against 29 people by ground truth.
    assert len(single) >= 15
    assert len(single) <= len(found) <= 29 + 3


def test_openvino_ssd_finds_people_of_a_portrait_frame_in_windows_of_its_input_shape(
    models_dir: Path, data_dir: Path
) -> None:
    # A Beijing BRT still: 360x640, 64 people in a queue seen from above. Squashed threefold
    # into the 544x320 input they are flat blobs; in three windows shaped like it, people.
    still = _image(data_dir / "brt_cam1" / "frames" / "cam1_000385.jpg")
    whole = TilingSettings(grid=(1, 1), full_frame=False, fit=False)
    squashed = _ssd(models_dir, confidence=0.25, tiling=whole).detect(still)
    fitted = _ssd(models_dir, confidence=0.25, tiling=replace(whole, fit=True)).detect(still)
    _assert_well_formed(fitted, still)
    # Measured: 0 squashed, 13 fitted (every one on an annotated head).
    assert len(squashed) <= 2
    assert len(fitted) >= 10
    heights = fitted.xyxy[:, 3] - fitted.xyxy[:, 1]
    assert (heights > fitted.xyxy[:, 2] - fitted.xyxy[:, 0]).mean() > 0.8  # upright boxes


def test_openvino_ssd_input_size_must_match_the_model(models_dir: Path) -> None:
    with pytest.raises(ValueError, match="544x320"):
        _ssd(models_dir, input_size=(320, 320))


# --- person-vehicle-bike-detection-2004 (openvino_boxes) -----------------------------------


def _boxes(models_dir: Path, **changes: Any) -> Detector:
    values: dict[str, Any] = {"input_size": (448, 256), "person_class_id": 1, "threads": 2}
    return _on_openvino(
        models_dir, "family openvino_boxes", BOXES_MODEL, "openvino_boxes", **{**values, **changes}
    )


def test_person_vehicle_bike_finds_the_bus_people_in_source_pixels_and_not_the_bus(
    models_dir: Path, bus: npt.NDArray[np.uint8]
) -> None:
    found = _boxes(models_dir, confidence=0.3).detect(bus)
    assert len(found) == 3  # the bus itself is label 0, a vehicle: never a person
    _assert_bus_people(found, bus)
    assert set(found.class_id.tolist()) == {1}
    # The man cut off at the left edge scores 0.22.
    low = _boxes(models_dir, confidence=0.2).detect(bus)
    assert len(low) == 4 and _matches(low, BUS_CUT_OFF) == 1


def test_person_vehicle_bike_finds_both_men_in_zidane(
    models_dir: Path, zidane: npt.NDArray[np.uint8]
) -> None:
    detector = _boxes(models_dir, confidence=0.45)
    found = detector.detect(zidane)
    # Below 0.42 it adds a third, full-height box left of Zidane that holds no head.
    assert len(found) == 2
    _assert_well_formed(found, zidane)
    _assert_zidane_heads(found)
    assert detector.provider.startswith("OpenVINO:")


def test_person_vehicle_bike_input_size_must_match_the_model(models_dir: Path) -> None:
    with pytest.raises(ValueError, match="448x256"):
        _boxes(models_dir, input_size=(544, 320))


def test_an_ssd_model_is_not_taken_for_a_boxes_model(models_dir: Path) -> None:
    _need_openvino("family openvino_boxes")
    settings = DetectorSettings(
        _model(models_dir, SSD_MODEL), "openvino_boxes", (544, 320), person_class_id=1
    )
    with pytest.raises(ValueError, match="outputs boxes and labels"):
        create_detector(settings)


# --- ByteTrack's YOLOX-Nano (yolox, its own normalization) ---------------------------------


def _bytetrack(models_dir: Path, **changes: Any) -> Detector:
    values: dict[str, Any] = {
        "input_size": (1088, 608),
        "normalization": IMAGENET,
        "frame_sized": True,
        "threads": 2,
    }
    return _on_openvino(
        models_dir, "a frame-sized YOLOX", BYTETRACK_MODEL, "yolox", **{**values, **changes}
    )


def test_bytetrack_at_the_photos_own_size_finds_all_four_bus_people(
    models_dir: Path, bus: npt.NDArray[np.uint8]
) -> None:
    detector = _bytetrack(models_dir, confidence=0.3)
    found = detector.detect(bus)
    assert len(found) == 4
    _assert_bus_people(found, bus)
    assert _matches(found, BUS_CUT_OFF) == 1  # scored 0.45: full bodies, cut or not
    assert isinstance(detector, OpenVinoYoloxDetector)
    assert detector.input_sizes == [(832, 1088)]  # 810x1080 rounded up to 32, not 1088x608
    assert detector.provider.startswith("OpenVINO:")


def test_bytetrack_finds_both_men_in_zidane_at_0_3(
    models_dir: Path, zidane: npt.NDArray[np.uint8]
) -> None:
    # Below 0.25 it boxes Zidane twice (a second box over his and the space to his left).
    found = _bytetrack(models_dir, confidence=0.3).detect(zidane)
    assert len(found) == 2
    _assert_well_formed(found, zidane)  # full bodies reach past the bottom edge: clipped
    _assert_zidane_heads(found)


def test_bytetrack_on_onnx_runtime_at_its_static_size_takes_the_same_normalization(
    models_dir: Path, bus: npt.NDArray[np.uint8]
) -> None:
    # ONNX Runtime refuses any other shape than the file's 1088x608: letterboxed into it.
    found = _bytetrack(models_dir, confidence=0.3, frame_sized=False).detect(bus)
    assert len(found) == 4
    _assert_bus_people(found, bus)


def test_bytetrack_fed_as_a_plain_yolox_sees_people_everywhere(
    models_dir: Path, bus: npt.NDArray[np.uint8]
) -> None:
    # Why the manifest says how to normalize: BGR 0-255 gives no error, only nonsense.
    found = _bytetrack(models_dir, confidence=0.3, normalization=None).detect(bus)
    assert len(found) >= 10  # measured 18, against 4 people


def test_bytetrack_compiles_once_per_frame_size_and_tiles_reuse_the_frames(
    models_dir: Path, mall_frame: npt.NDArray[np.uint8]
) -> None:
    detector = _bytetrack(models_dir, confidence=0.3, tiling=TilingSettings())
    assert isinstance(detector, OpenVinoYoloxDetector)
    portrait = np.ascontiguousarray(mall_frame[:, :360])  # 360x480, as a portrait camera
    for image in (mall_frame, portrait, mall_frame):
        _assert_well_formed(detector.detect(image), image)
    assert detector.input_sizes == [(640, 480), (384, 480)]
    found = detector.detect(mall_frame)
    assert 15 <= len(found) <= 29 + 3  # 29 people by ground truth
