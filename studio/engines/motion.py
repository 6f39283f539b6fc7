"""Camera-move vocabulary, the motion-prompt parser and the per-frame camera path.

`parse_motion("camera slowly zooming in and panning right")` gives a `MotionPlan` (moves, speed,
easing, fallback flag); `camera_path(plan, frames, fps, seed)` turns a plan into per-frame numbers
that `studio.engines.camera` renders.

Conventions (image coordinates, x right, y down):

- ``pan_right`` moves the *viewport* right over the image, so the picture content shifts LEFT in the
  frame; ``pan_left`` the reverse.  ``pan_up`` (= ``tilt_up``) moves the viewport up, so content shifts
  DOWN in the frame; ``pan_down`` (= ``tilt_down``) the reverse.
- ``zoom_in`` narrows the field of view (content grows); ``zoom_out`` widens it.
- ``roll_cw`` makes the picture appear to turn clockwise on screen; ``roll_ccw`` counter-clockwise.
- ``dolly_zoom_in`` is the "Vertigo" look: the centre (subject) keeps its size while the surroundings
  are magnified more and more towards the edges; ``dolly_zoom_out`` shrinks the surroundings instead.
- ``orbit_left``/``orbit_right`` are an orbit-like combination of a pan and a gentle push-in.
- ``sway`` is a gentle handheld sway: smooth low-frequency noise seeded by the request's seed.
- ``static`` is a locked-off camera (no motion).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger(__name__)

MOVES: tuple[str, ...] = (
    "zoom_in", "zoom_out", "pan_left", "pan_right", "pan_up", "pan_down", "roll_cw", "roll_ccw",
    "orbit_left", "orbit_right", "dolly_zoom_in", "dolly_zoom_out", "sway", "static",
)
ALIASES: dict[str, str] = {
    "tilt_up": "pan_up", "tilt_down": "pan_down", "push_in": "zoom_in", "pull_out": "zoom_out",
    "pull_back": "zoom_out", "truck_left": "pan_left", "truck_right": "pan_right",
    "crane_up": "pan_up", "crane_down": "pan_down", "roll": "roll_cw", "rotate_cw": "roll_cw",
    "rotate_ccw": "roll_ccw", "roll_clockwise": "roll_cw", "roll_counterclockwise": "roll_ccw",
    "orbit": "orbit_right", "dolly_zoom": "dolly_zoom_in", "vertigo": "dolly_zoom_in",
    "handheld": "sway", "zoom": "zoom_in", "none": "static",
}
EASINGS = ("ease-in-out", "linear")
# Pairs that cancel each other; in a prompt the first one mentioned wins.
_OPPOSITES = [("zoom_in", "zoom_out"), ("pan_left", "pan_right"), ("pan_up", "pan_down"),
              ("roll_cw", "roll_ccw"), ("orbit_left", "orbit_right"), ("dolly_zoom_in", "dolly_zoom_out")]

# Amplitudes at speed 1.0, over the whole clip.
ZOOM_LOG = math.log(1.30)          # zoom_in/out: 1.0 -> 1.3x
PAN = 0.25                          # fraction of the frame's width (height for up/down)
ROLL_DEG = 10.0
DOLLY = 0.30                        # edge magnification of dolly_zoom_in: 1 -> 1 + DOLLY
DOLLY_MIN, DOLLY_MAX = -0.4, 0.6    # warp coefficient limits (beyond them the warp looks folded)
ORBIT_PAN, ORBIT_ZOOM_LOG = 0.20, math.log(1.15)
SWAY_SHIFT, SWAY_ROLL_DEG, SWAY_ZOOM = 0.012, 0.5, 0.006

FALLBACK_SPEED = 0.5


@dataclass(frozen=True)
class MotionPlan:
    """What the camera does: moves (canonical names), a speed multiplier, easing and provenance."""

    moves: tuple[str, ...]
    speed: float = 1.0
    easing: str = "ease-in-out"
    fallback: bool = False
    source: str = "prompt"          # "prompt", "motion" (explicit) or "fallback"
    matched: tuple[str, ...] = ()   # the prompt phrases that produced the moves / speed

    def to_dict(self) -> dict:
        """A JSON-ready record for the manifest."""
        d = asdict(self)
        d["moves"], d["matched"] = list(self.moves), list(self.matched)
        return d


# ---------------------------------------------------------------------------------------------- parsing
_SPEED_WORDS: dict[str, float] = {
    "barely": 0.35, "imperceptibly": 0.35, "slightly": 0.5, "subtle": 0.5, "subtly": 0.5,
    "slow": 0.6, "slowly": 0.6, "gentle": 0.6, "gently": 0.6, "soft": 0.6, "softly": 0.6,
    "leisurely": 0.6, "calm": 0.6, "calmly": 0.6, "steady": 1.0, "moderate": 1.0,
    "fast": 1.8, "quick": 1.8, "quickly": 1.8, "swift": 1.8, "swiftly": 1.8, "rapid": 2.0,
    "rapidly": 2.0, "dramatic": 2.0, "dramatically": 2.0, "whip": 2.5,
}
_INTENSIFIERS = ("very", "extremely", "super", "really", "ultra")
_FILL = (r"(?:\s+(?:slowly|gently|quickly|fast|very|slightly|smoothly|steadily|softly|rapidly|subtly|a|"
         r"bit|little|to|the|toward|towards|over|across|more|further|gradually|from|camera|lens|view))*")
_DIR = {"left": r"left(?:ward|wards)?", "right": r"right(?:ward|wards)?",
        "up": r"(?:up|upward|upwards|skyward|skywards)", "down": r"(?:down|downward|downwards)"}
_PAN_VERB = r"(?:pan|pans|panned|panning|truck\w*|track\w*|strafe\w*|sweep\w*|crane\w*|boom\w*|pedestal\w*)"
_CAM_MOVE = r"camera\s+(?:is\s+)?(?:mov\w*|drift\w*|glid\w*|slid\w*|travel\w*|shift\w*|float\w*)"
_TILT_VERB = r"(?:tilt|tilts|tilted|tilting)"

# (move, pattern) in priority order; matched spans are blanked so "dolly zoom" is not also "zoom".
_PATTERNS: list[tuple[str, str]] = [
    ("dolly_zoom_out", r"\b(?:reverse|inverse|inverted)\s+(?:dolly\s+zoom|vertigo(?:\s+effect)?|zolly)\b"),
    ("dolly_zoom_out", r"\bdolly\s+zoom\s+out\b"),
    ("dolly_zoom_in", r"\b(?:dolly\s+zoom(?:\s+in)?|vertigo(?:\s+effect|\s+shot)?|zolly|contra\s*zoom)\b"),
    ("orbit_left", r"\b(?:orbit\w*|arc\w*|circl\w*)" + _FILL + r"\s+(?:around\s+)?(?:the\s+)?(?:subject\s+)?"
                   + _DIR["left"] + r"\b"),
    ("orbit_right", r"\b(?:orbit\w*|arc\w*|circl\w*)" + _FILL + r"\s+(?:around\s+)?(?:the\s+)?(?:subject\s+)?"
                    + _DIR["right"] + r"\b"),
    ("orbit_right", r"\b(?:orbit|orbits|orbiting|orbital)\b"),
    ("zoom_in", r"\bzoom\w*" + _FILL + r"\s+(?:in|into|inward|inwards|closer|toward|towards|on|onto)\b"),
    ("zoom_out", r"\bzoom\w*" + _FILL + r"\s+(?:out|back|away|outward|outwards)\b"),
    ("zoom_in", r"\b(?:push\w*|dolly\w*|mov\w*|creep\w*)" + _FILL + r"\s+(?:in|forward|closer)\b"),
    ("zoom_out", r"\b(?:pull\w*|dolly\w*|mov\w*)" + _FILL + r"\s+(?:out|back|backward|backwards|away)\b"),
    ("zoom_in", r"\b(?:push[\s-]?in|zoom|zooms|zooming)\b"),
    ("pan_left", r"\b(?:" + _PAN_VERB + "|" + _CAM_MOVE + ")" + _FILL + r"\s+" + _DIR["left"] + r"\b"),
    ("pan_right", r"\b(?:" + _PAN_VERB + "|" + _CAM_MOVE + ")" + _FILL + r"\s+" + _DIR["right"] + r"\b"),
    ("pan_up", r"\b(?:" + _PAN_VERB + "|" + _TILT_VERB + "|" + _CAM_MOVE + r"|camera\s+ris\w*)" + _FILL
               + r"\s+" + _DIR["up"] + r"\b"),
    ("pan_down", r"\b(?:" + _PAN_VERB + "|" + _TILT_VERB + "|" + _CAM_MOVE
                 + r"|camera\s+(?:descend|sink|lower)\w*)" + _FILL + r"\s+" + _DIR["down"] + r"\b"),
    ("pan_up", r"\bcamera\s+(?:ris|climb|ascend)\w*\b"),
    ("pan_down", r"\bcamera\s+(?:descend|sink|lower)\w*\b"),
    ("pan_right", r"\b(?:pan|pans|panned|panning)\b"),
    ("pan_up", r"\b(?:tilt|tilts|tilted|tilting)\b"),
    ("roll_ccw", r"\b(?:(?:roll|rotat|spin|turn|twist)\w*" + _FILL + r"\s+)?ccw\b"),
    ("roll_cw", r"\b(?:(?:roll|rotat|spin|turn|twist)\w*" + _FILL + r"\s+)?cw\b"),
    ("roll", r"\b(?:camera|dutch|barrel|slow|slowly|gentle|gently)\s+(?:roll|rotat|spin)\w*\b"),
    ("roll", r"\b(?:roll|rotat|spin)\w*\s+(?:the\s+)?(?:camera|frame|view|shot|image)\b"),
    ("sway", r"\b(?:hand\s*held|handycam|camera\s+(?:sway|shake|wobble|bob)\w*"
             r"|(?:sway|shak|wobbl)\w*\s+camera|camera\s+breath\w*)\b"),
    ("static", r"\b(?:static|still|locked[\s-]?off|fixed|stationary)\s+(?:camera|shot)\b|\bno\s+camera\s+"
               r"(?:movement|motion)\b"),
]
_LINEAR = r"\b(?:linear|linearly|constant\s+speed|uniform\s+speed|no\s+eas(?:e|ing)|steady|steadily)\b"


def _normalise(prompt: str) -> str:
    s = prompt.lower().replace("_", " ")
    s = re.sub(r"\b(?:counter|anti)[\s-]*clock[\s-]*wise\b", " ccw ", s)
    s = re.sub(r"\bclock[\s-]*wise\b", " cw ", s)
    s = re.sub(r"\bleft\s+to\s+(?:the\s+)?right\b", "rightward", s)
    s = re.sub(r"\bright\s+to\s+(?:the\s+)?left\b", "leftward", s)
    s = re.sub(r"\b(?:top|sky)\s+to\s+(?:the\s+)?(?:bottom|ground)\b", "downward", s)
    s = re.sub(r"\b(?:bottom|ground)\s+to\s+(?:the\s+)?(?:top|sky)\b", "upward", s)
    return re.sub(r"[-/]", " ", s)


def _clause_moves(clause: str) -> list[tuple[int, str, str]]:
    found: list[tuple[int, str, str]] = []
    text = clause
    for move, pat in _PATTERNS:
        for m in re.finditer(pat, text):
            found.append((m.start(), move, " ".join(m.group(0).split())))
        text = re.sub(pat, lambda m: " " * len(m.group(0)), text)
    # A roll without a direction is clockwise, unless the clause names a direction elsewhere.
    has_dir = any(mv in ("roll_cw", "roll_ccw") for _, mv, _ in found)
    found = [(p, "roll_cw" if mv == "roll" else mv, ph) for p, mv, ph in found
             if not (mv == "roll" and has_dir)]
    return sorted(found)


def _clause_speed(clause: str) -> tuple[float, str] | None:
    words = re.findall(r"[a-z]+", clause)
    for i, w in enumerate(words):
        if w in _SPEED_WORDS and _SPEED_WORDS[w] != 1.0:
            v = _SPEED_WORDS[w]
            if i > 0 and words[i - 1] in _INTENSIFIERS:
                return (v * 0.6 if v < 1 else v * 1.4), f"{words[i - 1]} {w}"
            return v, w
    return None


def _drop_opposites(moves: list[str]) -> list[str]:
    out: list[str] = []
    for mv in moves:
        clash = [a if b == mv else b for a, b in _OPPOSITES if mv in (a, b)]
        if mv in out or (clash and clash[0] in out):
            continue
        out.append(mv)
    if "static" in out and len(out) > 1:
        out.remove("static")
    return out


def canonical_moves(motion: str) -> tuple[str, ...]:
    """Parse an explicit move list like ``"zoom_in+pan_right"``; unknown names raise ValueError."""
    names = [t.strip().lower().replace("-", "_").replace(" ", "_") for t in re.split(r"[+,]", motion)]
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"motion={motion!r} names no camera move (known: {', '.join(MOVES)})")
    unknown = [n for n in names if n not in MOVES and n not in ALIASES]
    if unknown:
        raise ValueError(f"unknown camera move(s) {', '.join(map(repr, unknown))} in motion={motion!r} "
                         f"(known: {', '.join(MOVES)}; aliases: {', '.join(sorted(ALIASES))})")
    moves = [ALIASES.get(n, n) for n in names]
    for a, b in _OPPOSITES:
        if a in moves and b in moves:
            raise ValueError(f"motion={motion!r} asks for both {a!r} and {b!r}")
    out = list(dict.fromkeys(moves))
    if "static" in out and len(out) > 1:
        raise ValueError(f"motion={motion!r} combines 'static' with other moves")
    return tuple(out)


def _check_speed(speed: float | str) -> tuple[float, str]:
    if isinstance(speed, str):
        key = speed.strip().lower()
        sp = _clause_speed(key)
        if sp is not None:
            return sp[0], f"speed={speed!r}"
        try:
            speed = float(key)
        except ValueError:
            raise ValueError(f"speed={speed!r} is neither a number nor a speed word "
                             f"({', '.join(sorted(_SPEED_WORDS))})") from None
    if isinstance(speed, bool) or not (0.1 <= float(speed) <= 4.0):
        raise ValueError(f"speed={speed!r} is outside 0.1..4")
    return float(speed), "speed=explicit"


def parse_motion(prompt: str | None, motion: str | None = None, speed: float | str | None = None,
                 easing: str | None = None) -> MotionPlan:
    """Turn a motion prompt (and optional explicit `motion`/`speed`/`easing`) into a `MotionPlan`.

    Explicit `motion` (e.g. ``"zoom_in+pan_right"``) and `speed` (0.1–4 or a word) override what the
    prompt says.  Scene words ("clouds drifting left") are ignored; speed words count only in clauses
    that describe a camera move (or in a bare clause like ", slowly").  With no move found the plan
    falls back to a gentle push-in (``fallback=True``, logged as a warning).
    """
    text = _normalise(prompt or "")
    if easing is not None and easing not in EASINGS:
        raise ValueError(f"easing={easing!r} is not one of {', '.join(EASINGS)}")
    ease = easing or ("linear" if re.search(_LINEAR, text) else "ease-in-out")
    found: list[tuple[int, str, str]] = []
    spd: tuple[float, str] | None = None
    offset, bare = 0, []
    for clause in re.split(r"[,;.!?\n]|\bthen\b|\bwhile\b|\bas\b", text):
        hits = _clause_moves(clause)
        found += [(offset + p, mv, ph) for p, mv, ph in hits]
        if hits and spd is None:
            spd = _clause_speed(clause)
        elif not hits and len(clause.split()) <= 2:
            bare.append(clause)
        offset += len(clause) + 1
    # speed words count in a clause with a camera move, else in a bare one like ", very slowly"
    for clause in bare:
        spd = spd or _clause_speed(clause)
    matched = [ph for _, _, ph in found]
    if spd is not None:
        matched.append(spd[1])
    if speed is not None:
        spd = _check_speed(speed)

    if motion is not None and str(motion).strip():
        moves = canonical_moves(str(motion))
        return MotionPlan(moves=moves, speed=spd[0] if spd else 1.0, easing=ease, source="motion",
                          matched=tuple(matched))
    moves_l = _drop_opposites([mv for _, mv, _ in found])
    if not moves_l:
        sp = spd[0] if speed is not None and spd else FALLBACK_SPEED
        log.warning("no camera move found in prompt %r; fallback: gentle push-in (zoom_in, speed %.2g)",
                    prompt or "", sp)
        return MotionPlan(moves=("zoom_in",), speed=sp, easing=ease, fallback=True, source="fallback",
                          matched=tuple(matched))
    return MotionPlan(moves=tuple(moves_l), speed=spd[0] if spd else 1.0, easing=ease, source="prompt",
                      matched=tuple(matched))


# ------------------------------------------------------------------------------------------ camera path
@dataclass
class CameraPath:
    """Per-frame camera numbers (arrays of length T).

    zoom: magnification (>0, 1 = the base cover crop); ox, oy: viewport centre offset as a fraction of
    the base crop's width / height (+x right, +y down); roll: viewport rotation in radians (+ turns
    the viewport clockwise on screen, so content appears to turn counter-clockwise); warp: the radial
    dolly-zoom coefficient a (local scale 1 / (1 + a·ρ²), ρ = 1 at the frame's corners).
    """

    zoom: np.ndarray
    ox: np.ndarray
    oy: np.ndarray
    roll: np.ndarray
    warp: np.ndarray

    def __len__(self) -> int:
        return len(self.zoom)


def ease(t: np.ndarray, easing: str) -> np.ndarray:
    """Map clip time 0..1 to move progress 0..1 (smoothstep ease-in-out, or linear)."""
    if easing == "linear":
        return t
    return t * t * (3.0 - 2.0 * t)


def _smooth_noise(rng: np.random.Generator, seconds: np.ndarray) -> np.ndarray:
    """Sum of three low-frequency sinusoids (0.12–0.6 Hz), bounded by 1 in absolute value."""
    freqs = rng.uniform(0.12, 0.6, 3)
    phases = rng.uniform(0.0, 2 * math.pi, 3)
    weights = rng.uniform(0.5, 1.0, 3)
    weights /= weights.sum()
    return (weights[:, None] * np.sin(2 * math.pi * freqs[:, None] * seconds[None] + phases[:, None])).sum(0)


def camera_path(plan: MotionPlan, frames: int, fps: float, seed: int, amplitude: float = 1.0) -> CameraPath:
    """Per-frame zoom / offset / roll / warp for `plan`; `amplitude` scales every move (1 = as asked).

    Pans and rolls are centred on the base framing (they run from -A/2 to +A/2) so they need the least
    crop margin; zooms run from 1 to their maximum (zoom_out from the maximum back to 1).
    """
    n = int(frames)
    t = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    e = ease(t, plan.easing)
    k = plan.speed * amplitude
    logz = np.zeros(n)
    ox, oy, roll, warp = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    for mv in plan.moves:
        if mv == "zoom_in":
            logz += ZOOM_LOG * k * e
        elif mv == "zoom_out":
            logz += ZOOM_LOG * k * (1.0 - e)
        elif mv in ("pan_left", "pan_right"):
            ox += (1 if mv == "pan_right" else -1) * PAN * k * (e - 0.5)
        elif mv in ("pan_up", "pan_down"):
            oy += (1 if mv == "pan_down" else -1) * PAN * k * (e - 0.5)
        elif mv in ("roll_cw", "roll_ccw"):
            roll += (-1 if mv == "roll_cw" else 1) * math.radians(ROLL_DEG) * k * (e - 0.5)
        elif mv in ("orbit_left", "orbit_right"):
            ox += (1 if mv == "orbit_right" else -1) * ORBIT_PAN * k * (e - 0.5)
            logz += ORBIT_ZOOM_LOG * k * e
        elif mv in ("dolly_zoom_in", "dolly_zoom_out"):
            a_end = DOLLY * k * (1 if mv == "dolly_zoom_in" else -1)
            lim = min(max(a_end, DOLLY_MIN), DOLLY_MAX)
            if lim != a_end:
                log.warning("dolly zoom strength %.2f reduced to %.2f (a stronger warp folds the image)",
                            a_end, lim)
            warp += lim * e
        elif mv == "sway":
            rng = np.random.default_rng([int(seed), 0x5A7])
            sec = np.arange(n) / float(fps)
            ox += SWAY_SHIFT * k * _smooth_noise(rng, sec)
            oy += SWAY_SHIFT * k * _smooth_noise(rng, sec)
            roll += math.radians(SWAY_ROLL_DEG) * k * _smooth_noise(rng, sec)
            logz += SWAY_ZOOM * k * (1.0 + _smooth_noise(rng, sec))
        elif mv != "static":
            raise ValueError(f"unknown camera move {mv!r}")
    return CameraPath(zoom=np.exp(logz), ox=ox, oy=oy, roll=roll, warp=warp)
