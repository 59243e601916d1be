"""The most realistic image set tk can make offline: crops of real photographs that PyPI packages ship.

No photo dataset and no pretrained weights can be downloaded here, so issue 17's int8 goal is checked
on crops of the sample photos three installed-or-downloadable wheels carry (all real camera images):
scikit-learn (china.jpg, flower.jpg), matplotlib (grace_hopper.jpg) and scikit-image 0.26.0's
skimage/data (astronaut, chelsea, coffee, motorcycle_left, rocket, retina, hubble_deep_field), read
from the wheel file (`pip download --no-deps scikit-image==0.26.0`), never installed.

Each class is one photograph; each image is a random crop (10-45% of the photo's area, aspect
3:4..4:3), flipped half the time, with brightness/contrast/colour jitter, sometimes a blur, resized
to 256 px and saved as a JPEG of random quality 35-95: natural pixel statistics, JPEG artefacts and
crops that share little with each other. `standin` writes a MobileNetV2 224 base whose BatchNorm
statistics are measured on 120 crops of a separate seed (random conv weights: there are no ImageNet
weights offline), as benchmarks/export_parity.py's stand-in did on synthetic shapes.

    python benchmarks/photo_patches.py data OUT_DIR WHEEL [--per-class 100] [--seed 0] [--area 0.10,0.45]
    python benchmarks/photo_patches.py standin OUT.weights.h5 WHEEL
"""

from __future__ import annotations

import argparse
import io
import os
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

SKIMAGE = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg", "retina.jpg")


def photos(wheel: Path) -> dict[str, Image.Image]:
    """Class name -> RGB photograph."""
    import matplotlib
    import sklearn

    out = {}
    sk = Path(sklearn.__file__).parent / "datasets" / "images"
    for name in ("china.jpg", "flower.jpg"):
        out[Path(name).stem] = Image.open(sk / name).convert("RGB")
    mpl = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    out["grace_hopper"] = Image.open(mpl).convert("RGB")
    with zipfile.ZipFile(wheel) as z:
        for name in SKIMAGE:
            out[Path(name).stem] = Image.open(io.BytesIO(z.read(f"skimage/data/{name}"))).convert("RGB")
    return out


def crop(
    photo: Image.Image, rng: np.random.Generator, size: int = 256, area_range: tuple[float, float] = (0.10, 0.45)
) -> Image.Image:
    w, h = photo.size
    area = rng.uniform(*area_range) * w * h
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw, ch = int(min(w, np.sqrt(area * aspect))), int(min(h, np.sqrt(area / aspect)))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    img = photo.crop((x, y, x + cw, y + ch)).resize((size, size), Image.BICUBIC)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.6, 1.4))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.6, 1.4))
    img = ImageEnhance.Color(img).enhance(rng.uniform(0.5, 1.5))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=int(rng.integers(35, 96)))
    return Image.open(io.BytesIO(buffer.getvalue()))


def make_data(out: Path, wheel: Path, per_class: int, seed: int, area_range: tuple[float, float]) -> None:
    rng = np.random.default_rng(seed)
    for name, photo in sorted(photos(wheel).items()):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            crop(photo, rng, area_range=area_range).save(folder / f"{name}_{i:04d}.jpg", quality=95)
    print(f"wrote {out}")


def standin(out: Path, wheel: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(5)
    rng = np.random.default_rng(12345)
    images = [np.asarray(crop(p, rng).resize((224, 224))) for p in photos(wheel).values() for _ in range(15)]
    batch = np.stack(images).astype("float32") / 127.5 - 1.0  # MobileNetV2's own scaling
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(224, 224, 3))
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0  # one training-mode pass sets the moving statistics to this batch's
    base(batch, training=True)
    base.save_weights(out)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("data", "standin"))
    parser.add_argument("out", type=Path)
    parser.add_argument("wheel", type=Path, help="scikit_image-0.26.0-*.whl (pip download --no-deps)")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--area",
        default="0.10,0.45",
        help="MIN,MAX share of the photo's area per crop; small crops (0.01,0.06) share flat regions "
        "(sky, skin, blur) across photos: a hard set with real near-ties",
    )
    args = parser.parse_args()
    if args.what == "data":
        low, high = (float(x) for x in args.area.split(","))
        make_data(args.out, args.wheel, args.per_class, args.seed, (low, high))
    else:
        standin(args.out, args.wheel)


if __name__ == "__main__":
    main()
