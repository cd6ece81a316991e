"""Shared fixtures: real photos, edited copies, fresh data folders, and a real Chroma server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance
from skimage import data

from moderate import Engine

BIN = Path(sys.executable).parent

# Photos scikit-image ships in its wheel. Flagged ones go into banks; the others never do.
FLAGGED = {
    "astronaut": data.astronaut,
    "coffee": data.coffee,
    "rocket": data.rocket,
    "motorcycle": lambda: data.stereo_motorcycle()[0],
}
UNRELATED = {
    "chelsea": data.chelsea,
    "hubble": data.hubble_deep_field,
    "immuno": data.immunohistochemistry,
    "retina": data.retina,
    "camera": data.camera,
    "coins": data.coins,
    "moon": data.moon,
    "brick": data.brick,
}


def _rgb(array: np.ndarray) -> Image.Image:
    image = Image.fromarray(array)
    return image.convert("RGB")


def edits(image: Image.Image) -> dict[str, Image.Image]:
    """Everyday edits that PDQ is meant to survive."""
    w, h = image.size
    return {
        "scale25": image.resize((w // 4, h // 4), Image.Resampling.LANCZOS),
        "scale60": image.resize((int(w * 0.6), int(h * 0.6)), Image.Resampling.LANCZOS),
        "scale150": image.resize((int(w * 1.5), int(h * 1.5)), Image.Resampling.LANCZOS),
        "crop1": image.crop((int(w * 0.005), int(h * 0.005), int(w * 0.995), int(h * 0.995))),  # PDQ alone is crop-fragile
        "bright": ImageEnhance.Brightness(image).enhance(1.25),
        "contrast": ImageEnhance.Contrast(image).enhance(0.8),
    }


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> dict[str, Path]:
    """Every photo as a lossless PNG."""
    folder = tmp_path_factory.mktemp("photos")
    out = {}
    for name, load in {**FLAGGED, **UNRELATED}.items():
        path = folder / f"{name}.png"
        _rgb(load()).save(path)
        out[name] = path
    return out


@pytest.fixture(scope="session")
def edited(tmp_path_factory, photos) -> list[tuple[str, str, Path]]:
    """(photo, edit, path) for JPEG q30/q70 and the everyday edits of every flagged photo."""
    folder = tmp_path_factory.mktemp("edited")
    out = []
    for name in FLAGGED:
        image = Image.open(photos[name]).convert("RGB")
        for quality in (30, 70):
            path = folder / f"{name}-q{quality}.jpg"
            image.save(path, quality=quality)
            out.append((name, f"jpeg{quality}", path))
        for edit, copy in edits(image).items():
            path = folder / f"{name}-{edit}.jpg"
            copy.save(path, quality=90)
            out.append((name, edit, path))
    return out


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def engine(data_dir) -> Engine:
    return Engine(data_dir=data_dir)


@pytest.fixture
def flagged_folder(tmp_path, photos) -> Path:
    folder = tmp_path / "flagged"
    (folder / "set2").mkdir(parents=True)
    for i, name in enumerate(FLAGGED):
        target = folder / "set2" if i % 2 else folder
        shutil.copy(photos[name], target / f"{name}.png")
    return folder


@pytest.fixture
def banked(engine, flagged_folder) -> Engine:
    """An engine whose TERROR bank (block) holds every flagged photo."""
    engine.banks.create("TERROR", action="block", description="test bank")
    engine.banks.add("TERROR", [flagged_folder], recursive=True, metadata={"note": "case 17"})
    return engine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """A real `chroma run` server on 127.0.0.1, stopped by PID at the end of the session."""
    port = free_port()
    folder = tmp_path_factory.mktemp("chroma-server")
    log = open(folder / "server.log", "wb")
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    process = subprocess.Popen(
        [str(BIN / "chroma"), "run", "--path", str(folder / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chroma run exited with {process.returncode}: {(folder / 'server.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError("chroma run did not start listening within 60 s")
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def run_cli(*args: str, data_dir: Path | None = None, stdin: bytes | None = None, env: dict | None = None):
    """Run the real `moderate` command in a new process."""
    full_env = {**os.environ, **(env or {})}
    if data_dir is not None:
        full_env["MODERATE_HOME"] = str(data_dir)
    return subprocess.run([str(BIN / "moderate"), *args], input=stdin, capture_output=True, env=full_env, timeout=300)
