#!/usr/bin/env python3
"""(Re)creates the image fixtures of vlbeit-core's preprocessing and Pillow's reference outputs.

The Rust tests (core/tests/preprocess_pillow.rs) compare our decode, float resize and full
pipeline against what this script computes with Pillow, so the fixtures pin Pillow's version.

Run with Pillow in a throwaway venv outside the project (never in the project venv):

    python3 -m venv /tmp/pillow-venv
    /tmp/pillow-venv/bin/pip install pillow==11.3.0 numpy
    pip download --no-deps scikit-image==0.25.2 -d /tmp/skimage-wheel
    (cd /tmp/skimage-wheel && unzip -q scikit_image-*.whl 'skimage/data/*')
    /tmp/pillow-venv/bin/python scripts/make_preprocess_fixtures.py /tmp/skimage-wheel/skimage/data

The source photographs are scikit-image's sample data (public domain / CC0, see the README
written next to the fixtures). Everything below is deterministic for a given Pillow version.
"""

import json
import pathlib
import struct
import sys
import zlib

import numpy as np
import PIL
from PIL import Image, ImageOps

PILLOW_VERSION = "11.3.0"
OUT = pathlib.Path(__file__).resolve().parent.parent / "core" / "tests" / "fixtures" / "preprocess"
FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png16_rgb(path: pathlib.Path, rgb16: np.ndarray) -> None:
    """Pillow cannot write 16-bit RGB PNGs, so the chunks are written by hand."""
    h, w, _ = rgb16.shape
    rows = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(rows, 9))
        + png_chunk(b"IEND", b"")
    )


def make_images(src: pathlib.Path) -> None:
    coffee = Image.open(src / "coffee.png").convert("RGB")
    chelsea = Image.open(src / "chelsea.png").convert("RGB")
    astronaut = Image.open(src / "astronaut.png").convert("RGB")
    camera = Image.open(src / "camera.png").convert("L")
    lanczos = Image.Resampling.LANCZOS
    rng = np.random.default_rng(7)

    coffee.resize((256, 171), lanczos).save(OUT / "coffee.jpg", quality=90)
    chelsea.crop((120, 0, 320, 300)).resize((100, 150), lanczos).save(OUT / "chelsea_portrait.png")
    camera.resize((96, 96), lanczos).save(OUT / "camera_gray.png")

    rgba = astronaut.resize((96, 96), lanczos).convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (96, 1))
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(OUT / "astronaut_rgba.png")

    la = astronaut.resize((48, 48), lanczos).convert("LA")
    la.putalpha(Image.fromarray(alpha[:48, :48].T.copy()))
    la.save(OUT / "astronaut_la.png")

    # 16-bit: the low byte is noise, so a decoder that rounds instead of taking the high byte
    # (Pillow's choice for RGB;16B) is caught.
    rgb8 = np.asarray(astronaut.resize((64, 48), lanczos), dtype=np.uint16)
    write_png16_rgb(OUT / "astronaut_rgb16.png", rgb8 * 256 + rng.integers(0, 256, rgb8.shape))
    gray8 = np.asarray(camera.resize((48, 40), lanczos), dtype=np.uint16)
    gray16 = (gray8 * 256 + rng.integers(0, 256, gray8.shape)).astype(np.uint16)
    Image.fromarray(gray16).save(OUT / "camera_gray16.png")

    # EXIF orientation 6: stored 120x80, displayed 80x120 (rotated 90 degrees clockwise).
    exif = Image.Exif()
    exif[0x0112] = 6
    coffee.resize((120, 80), lanczos).save(OUT / "coffee_exif6.jpg", quality=90, exif=exif.tobytes())

    small = chelsea.resize((96, 64), lanczos)
    small.save(OUT / "chelsea_lossless.webp", lossless=True)
    small.save(OUT / "chelsea_lossy.webp", quality=80)
    Image.new("RGB", (1, 1), (200, 30, 90)).save(OUT / "pixel_1x1.png")


def pillow_rgb8(name: str) -> np.ndarray:
    with Image.open(OUT / name) as img:
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"), dtype=np.uint8)


def float_resize(rgb: np.ndarray, size: tuple, interpolation: str) -> np.ndarray:
    """Pillow's float resize: each channel as a mode "F" plane with values 0..255."""
    planes = []
    for c in range(3):
        plane = Image.fromarray(rgb[:, :, c].astype(np.float32))
        assert plane.mode == "F"
        planes.append(np.asarray(plane.resize(size, FILTERS[interpolation]), dtype=np.float32))
    return np.stack(planes)


def torchvision_pipeline(rgb: np.ndarray, cfg: dict) -> np.ndarray:
    """torchvision Resize(int) + CenterCrop + ToTensor-style scaling + Normalize, in float32."""
    h, w, _ = rgb.shape
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = cfg["resize"], int(cfg["resize"] * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    resized = float_resize(rgb, (new_w, new_h), cfg["interpolation"])
    size = cfg["image_size"]
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    crop = resized[:, top : top + size, left : left + size]
    mean = np.asarray(cfg["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(cfg["std"], dtype=np.float32)[:, None, None]
    return ((crop / np.float32(255.0) - mean) / std).astype(np.float32)


def main() -> None:
    if PIL.__version__ != PILLOW_VERSION:
        sys.exit(f"expected Pillow {PILLOW_VERSION}, found {PIL.__version__}")
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    OUT.mkdir(parents=True, exist_ok=True)
    make_images(pathlib.Path(sys.argv[1]))

    decode = []
    for name, exact in [
        ("coffee.jpg", False),
        ("chelsea_portrait.png", True),
        ("camera_gray.png", True),
        ("astronaut_rgba.png", True),
        ("astronaut_la.png", True),
        ("astronaut_rgb16.png", True),
        ("camera_gray16.png", True),
        ("coffee_exif6.jpg", False),
        ("chelsea_lossless.webp", True),
        ("chelsea_lossy.webp", False),
        ("pixel_1x1.png", True),
    ]:
        rgb = pillow_rgb8(name)
        note = None
        if name == "camera_gray16.png":
            # Pillow clips 16-bit grayscale ("I;16") to 0..255 instead of scaling; we take the
            # high byte as Pillow does for 16-bit RGB, so the reference is the high byte.
            with Image.open(OUT / name) as img:
                high = (np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8)
            rgb = np.repeat(high[:, :, None], 3, axis=2)
            note = "reference is the high byte; Pillow clips I;16 to 255"
        rgb.tofile(OUT / f"{name}.rgb8")
        entry = {"file": name, "width": rgb.shape[1], "height": rgb.shape[0], "exact": exact}
        if note:
            entry["note"] = note
        decode.append(entry)

    resize = []
    for source, box, size in [
        ("coffee.jpg", None, (61, 41)),
        ("coffee.jpg", (150, 90, 23, 17), (59, 43)),
        ("chelsea_portrait.png", None, (131, 29)),
        ("pixel_1x1.png", None, (5, 3)),
    ]:
        rgb = np.fromfile(OUT / f"{source}.rgb8", dtype=np.uint8)
        entry = next(d for d in decode if d["file"] == source)
        rgb = rgb.reshape(entry["height"], entry["width"], 3)
        if box:
            x, y, w, h = box
            rgb = rgb[y : y + h, x : x + w]
        for interpolation in FILTERS:
            if source == "chelsea_portrait.png" and interpolation == "bilinear":
                continue
            out = float_resize(rgb, size, interpolation)
            stem = f"resize_{source.split('.')[0]}_{size[0]}x{size[1]}_{interpolation}"
            out.astype("<f4").tofile(OUT / f"{stem}.f32")
            resize.append(
                {
                    "source": source,
                    "crop": box,
                    "width": size[0],
                    "height": size[1],
                    "interpolation": interpolation,
                    "output": f"{stem}.f32",
                }
            )

    pipeline = []
    half = {"mean": [0.5] * 3, "std": [0.5] * 3}
    imagenet = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    for source, image_size, resize_to, interpolation, norm in [
        ("coffee.jpg", 64, 73, "bicubic", imagenet),
        ("chelsea_portrait.png", 48, 56, "bilinear", half),
        ("coffee_exif6.jpg", 32, 40, "bicubic", half),
        ("camera_gray.png", 40, 40, "bicubic", imagenet),
        ("astronaut_rgba.png", 32, 37, "bilinear", half),
        ("pixel_1x1.png", 16, 16, "bicubic", half),
    ]:
        cfg = {"image_size": image_size, "resize": resize_to, "interpolation": interpolation, **norm}
        rgb = pillow_rgb8(source)
        out = torchvision_pipeline(rgb, cfg)
        stem = f"pipeline_{source.split('.')[0]}_{image_size}_{interpolation}"
        out.astype("<f4").tofile(OUT / f"{stem}.f32")
        pipeline.append({"source": source, "config": cfg, "output": f"{stem}.f32"})

    manifest = {
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "decode": decode,
        "resize": resize,
        "pipeline": pipeline,
    }
    (OUT / "reference.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir() if p.is_file())
    print(f"wrote {len(list(OUT.iterdir()))} files, {total} bytes, to {OUT}")


if __name__ == "__main__":
    main()
