"""The parameter spec: validation messages name the bad value; CLI flags come from it."""

from __future__ import annotations

import argparse

import pytest

from studio.params import SPEC, Param, add_arguments, check_values


def test_defaults_pass_their_own_checks():
    vals = check_values({})
    assert vals["frames"] == 16 and vals["fps"] == 8.0 and vals["engine"] == "camera"


@pytest.mark.parametrize("name,value,needle", [
    ("frames", 1, "frames=1 is below the minimum 2"),
    ("frames", 100000, "frames=100000 is above the maximum 257"),
    ("frames", "ten", "frames='ten' is not a valid int"),
    ("frames", 3.5, "frames=3.5 is not a valid int"),
    ("width", 513, "width=513 must be a multiple of 2"),
    ("fps", float("nan"), "fps=nan is not a valid float"),
    ("upscale", 5, "upscale=5 is not one of 1, 2, 3, 4"),
    ("upscaler", "waifu", "upscaler='waifu' is not one of"),
    ("color_match", "maybe", "color_match='maybe' is not a valid bool"),
])
def test_bad_values_are_named(name, value, needle):
    with pytest.raises(ValueError) as e:
        SPEC[name].check(value)
    assert needle in str(e.value)


def test_unknown_setting_is_refused():
    with pytest.raises(ValueError, match="unknown setting.*bogus"):
        check_values({"bogus": 1})


def test_frame_rule_and_override():
    p = SPEC["frames"].override(frame_rule=(8, 1), max=161)
    assert p.check(17) == 17
    with pytest.raises(ValueError, match=r"frames=16 must be 8k\+1 \(e.g. 9\)"):
        p.check(16)
    assert SPEC["frames"].frame_rule is None  # the core spec is untouched


def test_cli_flags_come_from_spec():
    ap = argparse.ArgumentParser()
    add_arguments(ap, ["frames", "color_match"])
    ns = ap.parse_args(["--frames", "9", "--no-color-match"])
    assert SPEC["frames"].check(ns.frames) == 9 and ns.color_match is False
    assert "[2..257]" in ap.format_help()


def test_optional_param_accepts_none_only_when_optional():
    assert SPEC["target_fps"].check(None) is None
    with pytest.raises(ValueError, match="frames is required"):
        SPEC["frames"].check(None)
    assert Param("x", int, 0, "h", optional=True).check(None) is None
