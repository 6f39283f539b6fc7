"""`--out` never replaces a folder that is not the studio's own PNG-frame output (the CLI's folder hazard)."""

from __future__ import annotations

from tests.test_cli import run_cli


def _tree(folder):
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_cli_refuses_a_foreign_folder_and_replaces_its_own(tmp_path, photo):
    clip = tmp_path / "clip.mp4"
    r = run_cli(
        "generate",
        str(photo),
        "--prompt",
        "zoom in",
        "--frames",
        "4",
        "--width",
        "64",
        "--height",
        "64",
        "--out",
        str(clip),
        "--device",
        "cpu",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr

    docs = tmp_path / "Documents"
    (docs / "taxes").mkdir(parents=True)
    (docs / "letter.txt").write_text("dear ...")
    (docs / "taxes" / "2026.pdf").write_bytes(b"%PDF-1.7")
    (docs / "frame_00000.png").write_bytes(b"looks like a frame, is in a user's folder")
    before = _tree(docs)
    for out in (str(docs) + "/", str(docs)):
        r = run_cli("post", str(clip), "--codec", "png", "--out", out, "--device", "cpu", "--quiet")
        assert r.returncode == 2, (out, r.stdout, r.stderr)
        assert f"output folder '{docs}' exists and is not a studio PNG-frame output" in r.stderr
    assert _tree(docs) == before
    assert not (tmp_path / "Documents.json").exists()

    user_json = tmp_path / "notes.json"  # a folder output writes <folder>.json beside it
    user_json.write_text('{"mine": true}')
    r = run_cli(
        "post",
        str(clip),
        "--codec",
        "png",
        "--out",
        str(tmp_path / "notes") + "/",
        "--device",
        "cpu",
        "--quiet",
    )
    assert r.returncode == 2 and "is not a studio manifest" in r.stderr
    assert user_json.read_text() == '{"mine": true}' and not (tmp_path / "notes").exists()

    frames = tmp_path / "frames"
    r = run_cli("post", str(clip), "--codec", "png", "--out", str(frames) + "/", "--device", "cpu", "--quiet")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in frames.iterdir()) == sorted(
        [f"frame_{i:05d}.png" for i in range(4)] + ["fps.txt"]
    )
    r = run_cli(
        "post",
        str(clip),
        "--codec",
        "png",
        "--upscale",
        "2",
        "--upscaler",
        "lanczos",
        "--out",
        str(frames) + "/",
        "--device",
        "cpu",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr  # its own frame folder: replaced
    from PIL import Image

    assert Image.open(frames / "frame_00000.png").size == (128, 128)
    (tmp_path / "frames.json").unlink()  # no manifest beside it: still the studio's files
    r = run_cli("post", str(clip), "--codec", "png", "--out", str(frames) + "/", "--device", "cpu", "--quiet")
    assert r.returncode == 0, r.stderr
    assert Image.open(frames / "frame_00000.png").size == (64, 64)
