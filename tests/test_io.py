import numpy as np
import pytest
from PIL import Image

from puzzlecam.errors import DataError
from puzzlecam.io import (
    append_jsonl,
    atomic_write,
    claim_folder,
    image_size,
    load_image,
    load_label_png,
    load_npz,
    read_jsonl,
    save_label_png,
    save_npz,
)
from tests.helpers import write_bomb_png, write_weight_files


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]  # no temp file left behind


@pytest.mark.parametrize("read", [load_image, image_size])
def test_corrupt_and_missing_images_name_the_file(tmp_path, read):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg: cannot be read as an image"):
        read(bad)
    with pytest.raises(DataError, match="nothere.jpg: image file not found"):
        read(tmp_path / "nothere.jpg")


def test_a_truncated_image_is_named(tmp_path):
    truncated = tmp_path / "truncated.png"
    Image.fromarray(np.full((64, 64, 3), 7, np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(DataError, match="truncated.png"):
        load_image(truncated)


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    if mode == "I;16":
        Image.fromarray(np.full((5, 7), 4000, np.uint16)).save(path)
    else:
        Image.new(mode, (7, 5)).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (7, 5)


def test_rgba_transparent_pixels_become_white(tmp_path):
    path = tmp_path / "t.png"
    pixels = np.zeros((2, 2, 4), np.uint8)
    pixels[0, 0] = (255, 0, 0, 255)  # opaque red; the rest transparent
    Image.fromarray(pixels, "RGBA").save(path)
    rgb = np.asarray(load_image(path))
    assert rgb[0, 0].tolist() == [255, 0, 0] and rgb[1, 1].tolist() == [255, 255, 255]


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_rotation_is_applied(tmp_path, suffix):
    path = tmp_path / f"rotated{suffix}"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    Image.new("RGB", (40, 20)).save(path, exif=exif)
    assert load_image(path).size == (20, 40)
    assert image_size(path) == (40, 20)  # (H, W) as load_image gives it, from the header


def test_image_size_reads_the_header_only(tmp_path):
    truncated = tmp_path / "truncated.png"
    Image.fromarray(np.full((64, 48, 3), 7, np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    assert image_size(truncated) == (64, 48)  # its header is whole: a cheap check passes it


def test_label_png_round_trip_and_rgb_rejected(tmp_path):
    labels = np.array([[0, 1], [255, 20]], np.uint8)
    save_label_png(tmp_path / "l.png", labels)
    assert Image.open(tmp_path / "l.png").mode == "P"
    np.testing.assert_array_equal(load_label_png(tmp_path / "l.png"), labels)
    Image.new("RGB", (2, 2)).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match="rgb.png.*mode RGB"):
        load_label_png(tmp_path / "rgb.png")


def test_npz_has_no_pickle(tmp_path):
    save_npz(tmp_path / "a.npz", keys=np.array([1, 3]), scores=np.ones((2, 3, 4), np.float16))
    data = load_npz(tmp_path / "a.npz")
    assert data["keys"].tolist() == [1, 3] and data["scores"].dtype == np.float16
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    import zipfile

    with zipfile.ZipFile(tmp_path / "evil.npz", "w") as archive:
        archive.write(tmp_path / "obj.npy", "obj.npy")
    with pytest.raises(DataError, match="evil.npz"):
        load_npz(tmp_path / "evil.npz")


@pytest.mark.parametrize("reader", [load_image, load_label_png, image_size])
def test_decompression_bomb_is_a_data_error_naming_the_file(tmp_path, reader):
    path = write_bomb_png(tmp_path / "bomb.png")
    with pytest.raises(DataError) as caught:
        reader(path)
    assert caught.value.path == path
    assert "too many pixels to decode safely" in caught.value.problem
    assert "shrink the image" in caught.value.problem


def test_decompression_bomb_warning_as_error_is_a_data_error(tmp_path):
    import warnings

    path = write_bomb_png(tmp_path / "big.png", 10_000, 10_000)  # between 1x and 2x the limit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match="too many pixels"):
            load_image(path)


def test_tensor_files_load_and_bad_ones_are_refused_without_running_them(tmp_path):
    from puzzlecam.io import load_tensor_file

    folder = write_weight_files(tmp_path / "w")
    assert load_tensor_file(folder / "good.pt", "fix")["state_dict"]["w"].sum() == 2
    with pytest.raises(DataError) as caught:
        load_tensor_file(folder / "payload.pt", "use a plain one")
    message = str(caught.value)
    assert message.startswith(f"{folder / 'payload.pt'}: not a plain weights file")
    assert "was not loaded; use a plain one" in message and "system" in message
    assert "weights_only" not in message and "False" not in message
    assert not (folder / "PWNED").exists()
    for name in ("truncated.pt", "empty.pt", "text.pt"):
        with pytest.raises(DataError, match="cannot be read as a weights file") as caught:
            load_tensor_file(folder / name, "fix")
        assert caught.value.path.name == name and "weights_only" not in str(caught.value)
    with pytest.raises(DataError, match="weights file not found; fix"):
        load_tensor_file(folder / "missing.pt", "fix")


def test_a_raw_pickle_of_protocol_4_is_refused_in_one_line(tmp_path, recwarn):
    import pickle

    from puzzlecam.io import load_tensor_file

    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"state_dict": {"w": [1.0]}}, protocol=4))
    with pytest.raises(DataError, match="not a plain weights file"):
        load_tensor_file(path, "fix")
    assert not [str(w.message) for w in recwarn]  # torch's protocol warning stays inside


def test_jsonl_skips_only_a_torn_last_line(tmp_path):
    path = tmp_path / "log.jsonl"
    assert read_jsonl(path) == []
    append_jsonl(path, {"step": 1})
    append_jsonl(path, {"step": 2})
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"step": 3, "lo')  # a write interrupted mid-line
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    path.write_text('{"step": 1}\n{"step": 2}', encoding="utf-8")  # whole, no newline
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]


def test_jsonl_names_a_bad_line_that_is_not_the_last(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 1}\n\n{"step": 2, "lo\n{"step": 3}\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 3 is not a JSON record") as caught:
        read_jsonl(path)
    assert caught.value.path == path


def test_claim_folder_writes_its_marker_once_then_checks_it(tmp_path):
    folder = tmp_path / "out" / "cams"
    written, checked = [], []
    assert claim_folder(folder, ".owner", written.append, checked.append)
    assert folder.is_dir() and written == [folder / ".owner"] and checked == []
    (folder / ".owner").write_text("a", encoding="utf-8")

    def refuse(marker):
        raise DataError(marker, "belongs to another configuration")

    assert not claim_folder(folder, ".owner", written.append, checked.append)
    assert checked == [folder / ".owner"] and len(written) == 1
    with pytest.raises(DataError, match="another configuration"):
        claim_folder(folder, ".owner", written.append, refuse)
