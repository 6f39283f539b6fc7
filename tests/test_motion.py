"""Motion-prompt parser and camera path: prompts -> moves/speed, overrides, errors, fallback, path numbers."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from studio.engines.motion import (
    MOVES,
    PAN,
    ROLL_DEG,
    ZOOM_LOG,
    MotionPlan,
    camera_path,
    canonical_moves,
    parse_motion,
)

TABLE = [
    # prompt, expected moves, expected speed
    ("camera slowly zooming in and panning right", ("zoom_in", "pan_right"), 0.6),
    ("Zoom in", ("zoom_in",), 1.0),
    ("very slowly zoom out", ("zoom_out",), 0.36),
    ("fast pan to the left", ("pan_left",), 1.8),
    ("rapid whip pan right", ("pan_right",), 2.0),
    ("quickly panning from left to right", ("pan_right",), 1.8),
    ("tilt up to the sky", ("pan_up",), 1.0),
    ("camera tilting down slowly", ("pan_down",), 0.6),
    ("crane up over the city", ("pan_up",), 1.0),
    ("gentle push in on her face", ("zoom_in",), 0.6),
    ("subtle push in", ("zoom_in",), 0.5),
    ("pull back to reveal the valley", ("zoom_out",), 1.0),
    ("camera rotating clockwise", ("roll_cw",), 1.0),
    ("slow counter-clockwise roll", ("roll_ccw",), 0.6),
    ("anticlockwise camera roll, quickly", ("roll_ccw",), 1.8),
    ("orbiting around the statue", ("orbit_right",), 1.0),
    ("arc left around the subject", ("orbit_left",), 1.0),
    ("dolly zoom on the hero", ("dolly_zoom_in",), 1.0),
    ("vertigo effect", ("dolly_zoom_in",), 1.0),
    ("reverse dolly zoom", ("dolly_zoom_out",), 1.0),
    ("handheld shot of a busy street", ("sway",), 1.0),
    ("static camera, waves crashing", ("static",), 1.0),
    ("zoom in and pan up, handheld", ("zoom_in", "pan_up", "sway"), 1.0),
    # scene words are not camera moves; speed words count only in a clause with a camera move
    ("clouds drifting slowly, camera zooming in fast", ("zoom_in",), 1.8),
    ("trees swaying in the wind, camera pans left", ("pan_left",), 1.0),
    ("zoom in then zoom out", ("zoom_in",), 1.0),  # opposites: the first mentioned wins
]


@pytest.mark.parametrize("prompt,moves,speed", TABLE)
def test_prompt_table(prompt: str, moves: tuple[str, ...], speed: float) -> None:
    plan = parse_motion(prompt)
    assert plan.moves == moves
    assert plan.speed == pytest.approx(speed)
    assert plan.fallback is False and plan.source == "prompt"
    assert set(plan.moves) <= set(MOVES)


def test_easing_default_and_linear() -> None:
    assert parse_motion("zoom in").easing == "ease-in-out"
    assert parse_motion("linear pan right").easing == "linear"
    assert parse_motion("pan right at constant speed").easing == "linear"
    assert parse_motion("zoom in", easing="linear").easing == "linear"
    with pytest.raises(ValueError, match="easing='bouncy'"):
        parse_motion("zoom in", easing="bouncy")


def test_explicit_motion_and_speed_override_prompt() -> None:
    plan = parse_motion("camera slowly zooming in", motion="pan_left+tilt_up", speed=2.5)
    assert plan.moves == ("pan_left", "pan_up") and plan.speed == 2.5 and plan.source == "motion"
    # the prompt's speed word still applies when only the moves are given
    assert parse_motion("slowly", motion="zoom_out").speed == pytest.approx(0.6)
    # and an explicit speed overrides the prompt's word
    assert parse_motion("zoom in very fast", speed=0.3).speed == 0.3
    assert parse_motion("zoom in", speed="slowly").speed == pytest.approx(0.6)
    assert canonical_moves("Zoom-In, pan right") == ("zoom_in", "pan_right")
    assert canonical_moves("handheld+vertigo") == ("sway", "dolly_zoom_in")


def test_unknown_move_names_are_named() -> None:
    with pytest.raises(ValueError) as ei:
        parse_motion("zoom in", motion="zoom_in+wobble+spin_around")
    msg = str(ei.value)
    assert "'wobble'" in msg and "'spin_around'" in msg and "zoom_in" in msg
    with pytest.raises(ValueError, match="'zoom_in' and 'zoom_out'"):
        canonical_moves("zoom_in+zoom_out")
    with pytest.raises(ValueError, match="speed=9"):
        parse_motion("", motion="zoom_in", speed=9)
    with pytest.raises(ValueError, match="speed='warp'"):
        parse_motion("", motion="zoom_in", speed="warp")


@pytest.mark.parametrize("prompt", ["", "   ", "a cat on a sofa", "clouds drifting left", "rolling hills"])
def test_fallback_is_logged(prompt: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="studio.engines.motion"):
        plan = parse_motion(prompt)
    assert plan.fallback is True and plan.source == "fallback"
    assert plan.moves == ("zoom_in",) and plan.speed < 1.0
    assert any("fallback" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_no_fallback_warning_for_a_real_move(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        parse_motion("pan left")
    assert not any("fallback" in r.getMessage() for r in caplog.records)


def test_plan_to_dict_is_json_ready() -> None:
    d = parse_motion("slowly zoom in").to_dict()
    assert d["moves"] == ["zoom_in"] and d["speed"] == 0.6 and d["fallback"] is False
    assert d["easing"] == "ease-in-out"


def _plan(moves: str, speed: float = 1.0, easing: str = "ease-in-out") -> MotionPlan:
    return MotionPlan(moves=canonical_moves(moves), speed=speed, easing=easing, source="motion")


def test_path_zoom_pan_roll_numbers() -> None:
    p = camera_path(_plan("zoom_in"), 9, 8.0, 0)
    assert p.zoom[0] == pytest.approx(1.0) and p.zoom[-1] == pytest.approx(math.exp(ZOOM_LOG))
    assert np.all(np.diff(p.zoom) > 0)
    q = camera_path(_plan("zoom_out", speed=2.0), 9, 8.0, 0)
    assert q.zoom[0] == pytest.approx(math.exp(2 * ZOOM_LOG)) and q.zoom[-1] == pytest.approx(1.0)
    pan = camera_path(_plan("pan_right", easing="linear"), 5, 8.0, 0)
    assert pan.ox.tolist() == pytest.approx(np.linspace(-PAN / 2, PAN / 2, 5).tolist())
    assert np.allclose(pan.oy, 0) and np.allclose(pan.zoom, 1)
    up = camera_path(_plan("tilt_up"), 5, 8.0, 0)
    assert up.oy[0] > 0 > up.oy[-1]  # the viewport moves up (towards smaller y)
    roll = camera_path(_plan("roll_cw"), 5, 8.0, 0)
    assert roll.roll[-1] - roll.roll[0] == pytest.approx(-math.radians(ROLL_DEG))
    # ease-in-out: slow at both ends, fastest in the middle
    e = np.diff(camera_path(_plan("pan_right"), 9, 8.0, 0).ox)
    assert e[0] < e[3] and e[-1] < e[4] and e[0] == pytest.approx(e[-1])


def test_sway_is_smooth_bounded_and_seeded() -> None:
    a = camera_path(_plan("sway"), 48, 24.0, 7)
    b = camera_path(_plan("sway"), 48, 24.0, 7)
    c = camera_path(_plan("sway"), 48, 24.0, 8)
    assert np.array_equal(a.ox, b.ox) and np.array_equal(a.roll, b.roll)
    assert not np.allclose(a.ox, c.ox)
    assert np.abs(a.ox).max() <= 0.012 + 1e-9 and np.abs(a.ox).max() > 1e-4
    # low frequency: frame-to-frame steps are a small fraction of the amplitude
    assert np.abs(np.diff(a.ox)).max() < 0.2 * 0.012


def test_dolly_zoom_warp_is_limited_smoothly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        p = camera_path(_plan("dolly_zoom_in", speed=4.0), 5, 8.0, 0)
    assert p.warp[-1] == pytest.approx(0.6) and p.warp[0] == 0
    assert np.all(np.diff(p.warp) > 0)  # scaled down, not clipped: it keeps moving to the end
    assert any("reduced" in r.getMessage() for r in caplog.records)
    assert camera_path(_plan("dolly_zoom_out"), 5, 8.0, 0).warp[-1] < 0
