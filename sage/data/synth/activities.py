"""The activities of SynthDrivers: one pose function per activity, and the class tables.

A pose says where each hand and elbow is, what each hand holds, and how the head is
turned. Activities are named by what the driver does (``"text_right"``); the class tables
map the class names of each raw layout onto them, so a mapped 100-Driver class
(``C7_Text_Right``) is rendered by exactly the same pose function as its SF3D class
(``c1``).

Sides: ``side = -1`` is the driver's right (image left, where the console and the passenger
are), ``side = +1`` the driver's left (image right, the door). Mirrored pairs (texting or
phoning right vs left) call one function with opposite sides, so the only difference is
which hand moves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .scene import BODY, HEAD, LEFT_HAND, OBJECT, RGB, RIGHT_HAND, Pt, SubjectLook

RIGHT, LEFT = -1, 1

WHEEL_CENTRE: Pt = (0.56, 0.87)
WHEEL_RADII: Pt = (0.21, 0.12)
RADIO: Pt = (0.15, 0.86)
GPS: Pt = (0.17, 0.66)
SEAT_ANCHOR: Pt = (0.56, 0.75)  # the driver scales about this point (body size per subject)


@dataclass(frozen=True)
class Body:
    """Key points of the seated driver in scene units, after size and seat position."""

    head: Pt
    head_r: Pt
    neck_w: float
    shoulder_r: Pt
    shoulder_l: Pt
    hip_r: Pt
    hip_l: Pt
    scale: float

    @property
    def cx(self) -> float:
        return self.head[0]

    def shoulder(self, side: int) -> Pt:
        return self.shoulder_r if side == RIGHT else self.shoulder_l

    def ear(self, side: int) -> Pt:
        return (self.head[0] + side * self.head_r[0] * 0.95, self.head[1] + 0.1 * self.head_r[1])

    @property
    def mouth(self) -> Pt:
        return (self.head[0], self.head[1] + 0.55 * self.head_r[1])

    @property
    def crown(self) -> Pt:
        return (self.head[0], self.head[1] - 0.95 * self.head_r[1])

    @property
    def chest_y(self) -> float:
        return self.shoulder_r[1] + 0.13 * self.scale


def make_body(subject: SubjectLook, rng: np.random.Generator) -> Body:
    """The body of ``subject`` in this image: their size and seat, plus a little per-image sway."""
    k = subject.body_scale * (1 + rng.normal(0, 0.02))
    ox = subject.seat_offset[0] + rng.normal(0, 0.008)
    oy = subject.seat_offset[1] + rng.normal(0, 0.006)
    ax, ay = SEAT_ANCHOR

    def t(x: float, y: float) -> Pt:
        return (ax + (x - ax) * k + ox, ay + (y - ay) * k + oy)

    return Body(
        head=t(0.56, 0.36),
        head_r=(0.075 * k, 0.094 * k),
        neck_w=0.056 * k,
        shoulder_r=t(0.41, 0.56),
        shoulder_l=t(0.71, 0.56),
        hip_r=t(0.41, 1.1),
        hip_l=t(0.71, 1.1),
        scale=k,
    )


@dataclass(frozen=True)
class Held:
    """An object in a hand (or at the mouth): phone, cup, comb, cigarette."""

    kind: str
    centre: Pt
    angle: float
    colour: RGB
    under_hand: bool = False  # drawn before the hand (a phone pressed to the ear)


@dataclass
class Pose:
    """Where the hands and elbows are, what is held, and how the head and torso are turned."""

    hands: dict[int, Pt]
    elbows: dict[int, Pt]
    yaw: float = 0.0  # head turn, -1 = towards image left (passenger), +1 = towards the door
    pitch: float = 0.0  # head nod, +1 = looking down, -1 = looking up
    roll: float = 0.0  # head tilt, radians
    eyes_closed: bool = False
    mouth: str = "closed"  # "closed", "open" or "wide"
    torso_turn: float = 0.0  # -1 = right shoulder pulled back (reaching behind)
    objects: list[Held] = field(default_factory=list)


def _n(rng: np.random.Generator, s: float) -> float:
    return float(rng.normal(0.0, s))


def _add(p: Pt, dx: float, dy: float) -> Pt:
    return (p[0] + dx, p[1] + dy)


def _wheel_grip(rng: np.random.Generator, side: int) -> Pt:
    """A hand on the rim around ten-to-two; its angle varies a little per image."""
    theta = math.radians(90 - side * (58 + rng.normal(0, 9)))
    cx, cy = WHEEL_CENTRE
    return (cx + WHEEL_RADII[0] * math.cos(theta), cy - WHEEL_RADII[1] * math.sin(theta))


def _elbow_low(b: Body, side: int, rng: np.random.Generator, out: float = 0.035) -> Pt:
    """An elbow hanging beside the torso (arm bent, forearm raised or forward)."""
    s = b.shoulder(side)
    return (s[0] + side * (out + _n(rng, 0.01)) * b.scale, s[1] + (0.15 + _n(rng, 0.01)) * b.scale)


def _elbow_between(s: Pt, h: Pt, sag: float) -> Pt:
    """An elbow between shoulder and hand, sagging ``sag`` below the straight line."""
    return ((s[0] + h[0]) / 2, (s[1] + h[1]) / 2 + sag)


def _on_wheel(b: Body, pose: Pose, side: int, rng: np.random.Generator) -> None:
    h = _wheel_grip(rng, side)
    pose.hands[side] = h
    s = b.shoulder(side)
    pose.elbows[side] = (s[0] + side * 0.045 * b.scale + _n(rng, 0.008), (s[1] + h[1]) / 2 + 0.02)


def _base(b: Body, rng: np.random.Generator) -> Pose:
    pose = Pose(hands={}, elbows={}, yaw=_n(rng, 0.1), pitch=_n(rng, 0.1), roll=_n(rng, 0.05))
    _on_wheel(b, pose, RIGHT, rng)
    _on_wheel(b, pose, LEFT, rng)
    return pose


def _colour(rng: np.random.Generator, choices: tuple[RGB, ...]) -> RGB:
    return choices[int(rng.integers(len(choices)))]


PHONE_COLOURS = ((25, 25, 28), (235, 235, 238), (180, 40, 50), (40, 70, 160), (200, 170, 120))
CUP_COLOURS = ((240, 240, 235), (200, 40, 40), (120, 70, 40), (40, 120, 60), (230, 190, 60))


def safe_driving(b: Body, rng: np.random.Generator) -> Pose:
    return _base(b, rng)


def _text(b: Body, rng: np.random.Generator, side: int) -> Pose:
    pose = _base(b, rng)
    h = (b.cx + side * (0.07 + _n(rng, 0.015)), b.chest_y + _n(rng, 0.02))
    pose.hands[side] = h
    pose.elbows[side] = _elbow_low(b, side, rng)
    pose.pitch = 0.75 + _n(rng, 0.1)
    pose.yaw = side * 0.15 + _n(rng, 0.08)
    phone = _add(h, -side * 0.012, -0.03)
    pose.objects.append(Held("phone", phone, _n(rng, 0.25), _colour(rng, PHONE_COLOURS)))
    return pose


def _phone_call(b: Body, rng: np.random.Generator, side: int) -> Pose:
    pose = _base(b, rng)
    ear = b.ear(side)
    pose.hands[side] = _add(ear, side * 0.03 + _n(rng, 0.008), 0.035 + _n(rng, 0.01))
    pose.elbows[side] = _elbow_low(b, side, rng, out=0.05)
    pose.roll = side * 0.15 + _n(rng, 0.06)
    pose.yaw = _n(rng, 0.15)
    pose.mouth = "open" if rng.random() < 0.5 else "closed"
    colour = _colour(rng, PHONE_COLOURS)
    pose.objects.append(Held("phone_ear", _add(ear, side * 0.012, 0.0), side * 0.2, colour, True))
    return pose


def _console(b: Body, rng: np.random.Generator, target: Pt, yaw: float) -> Pose:
    pose = _base(b, rng)
    h = (target[0] + _n(rng, 0.015), target[1] + _n(rng, 0.012))
    pose.hands[RIGHT] = h
    pose.elbows[RIGHT] = _elbow_between(b.shoulder_r, h, 0.03 + _n(rng, 0.01))
    pose.yaw = yaw + _n(rng, 0.12)
    pose.pitch = 0.25 + _n(rng, 0.1)
    return pose


def operate_radio(b: Body, rng: np.random.Generator) -> Pose:
    return _console(b, rng, (0.15, 0.855), -0.35)


def operate_gps(b: Body, rng: np.random.Generator) -> Pose:
    return _console(b, rng, (0.17, 0.665), -0.25)


def _to_mouth(b: Body, rng: np.random.Generator, side: int, kind: str) -> Pose:
    pose = _base(b, rng)
    m = b.mouth
    if kind == "cup":
        pose.hands[side] = _add(m, side * 0.05 + _n(rng, 0.008), 0.06 + _n(rng, 0.01))
        cup = _add(m, side * 0.02, 0.03)
        pose.objects.append(Held("cup", cup, -side * 0.35, _colour(rng, CUP_COLOURS)))
        pose.pitch = -0.3 + _n(rng, 0.1)
    else:  # cigarette between the fingers, hand just off the mouth
        pose.hands[side] = _add(m, side * 0.045 + _n(rng, 0.008), 0.03 + _n(rng, 0.01))
        cig = _add(m, side * 0.02, 0.01)
        pose.objects.append(Held("cigarette", cig, side * 0.3, (245, 245, 240)))
    pose.elbows[side] = _elbow_low(b, side, rng, out=0.0)
    pose.yaw = _n(rng, 0.1)
    return pose


def drink_left(b: Body, rng: np.random.Generator) -> Pose:
    return _to_mouth(b, rng, LEFT, "cup")


def drink_right(b: Body, rng: np.random.Generator) -> Pose:
    return _to_mouth(b, rng, RIGHT, "cup")


def reach_behind(b: Body, rng: np.random.Generator) -> Pose:
    pose = _base(b, rng)
    pose.torso_turn = -0.8 + _n(rng, 0.1)
    s = b.shoulder_r
    h = (s[0] - 0.27 * b.scale + _n(rng, 0.02), s[1] - 0.12 * b.scale + _n(rng, 0.02))
    pose.hands[RIGHT] = h
    pose.elbows[RIGHT] = _elbow_between(s, h, 0.015)
    pose.yaw = -0.85 + _n(rng, 0.08)
    pose.pitch = -0.1 + _n(rng, 0.1)
    return pose


def hair_and_makeup(b: Body, rng: np.random.Generator) -> Pose:
    pose = _base(b, rng)
    h = _add(b.crown, -0.03 + _n(rng, 0.015), 0.01 + _n(rng, 0.01))
    pose.hands[RIGHT] = h
    s = b.shoulder_r
    pose.elbows[RIGHT] = (s[0] - 0.08 * b.scale + _n(rng, 0.01), h[1] + 0.05 + _n(rng, 0.01))
    pose.roll = -0.12 + _n(rng, 0.06)
    pose.yaw = _n(rng, 0.15)
    if rng.random() < 0.7:  # a comb in the hand; otherwise fingers in the hair
        comb = _add(h, 0.035, 0.0)
        pose.objects.append(Held("comb", comb, 0.3 + _n(rng, 0.2), _colour(rng, PHONE_COLOURS)))
    return pose


def talk_to_passenger(b: Body, rng: np.random.Generator) -> Pose:
    pose = _base(b, rng)
    pose.yaw = -0.85 + _n(rng, 0.08)
    pose.roll = -0.05 + _n(rng, 0.05)
    pose.mouth = "open" if rng.random() < 0.7 else "closed"
    return pose


# Unmapped 100-Driver classes: deliberately simple variants of the poses above.
def sleep(b: Body, rng: np.random.Generator) -> Pose:
    pose = _base(b, rng)
    pose.pitch = 0.85 + _n(rng, 0.08)
    pose.roll = float(rng.choice([-1, 1])) * (0.25 + _n(rng, 0.05))
    pose.eyes_closed = True
    return pose


def yawn(b: Body, rng: np.random.Generator) -> Pose:
    pose = _base(b, rng)
    pose.pitch = -0.35 + _n(rng, 0.1)
    pose.mouth = "wide"
    pose.eyes_closed = rng.random() < 0.5
    return pose


def _look(yaw: float, pitch: float) -> Callable[[Body, np.random.Generator], Pose]:
    def pose_fn(b: Body, rng: np.random.Generator) -> Pose:
        pose = _base(b, rng)
        pose.yaw = yaw + _n(rng, 0.08)
        pose.pitch = pitch + _n(rng, 0.08)
        return pose

    return pose_fn


def smoke_mouth(b: Body, rng: np.random.Generator) -> Pose:
    pose = _base(b, rng)
    pose.objects.append(Held("cigarette", _add(b.mouth, 0.025, 0.01), 0.35, (245, 245, 240)))
    return pose


def hands_off_wheel(b: Body, rng: np.random.Generator) -> Pose:
    pose = _base(b, rng)
    for side in (RIGHT, LEFT):
        pose.hands[side] = (b.cx + side * (0.12 + _n(rng, 0.02)), b.chest_y + 0.06 + _n(rng, 0.02))
        pose.elbows[side] = _elbow_low(b, side, rng, out=0.05)
    return pose


ACTIVITIES: dict[str, Callable[[Body, np.random.Generator], Pose]] = {
    "safe_driving": safe_driving,
    "text_right": lambda b, rng: _text(b, rng, RIGHT),
    "phone_right": lambda b, rng: _phone_call(b, rng, RIGHT),
    "text_left": lambda b, rng: _text(b, rng, LEFT),
    "phone_left": lambda b, rng: _phone_call(b, rng, LEFT),
    "operate_radio": operate_radio,
    "drink_left": drink_left,
    "reach_behind": reach_behind,
    "hair_and_makeup": hair_and_makeup,
    "talk_to_passenger": talk_to_passenger,
    "operate_gps": operate_gps,
    "drink_right": drink_right,
    "sleep": sleep,
    "yawn": yawn,
    # "Left"/"right" are the driver's: looking left turns the face to the door (image right).
    "look_left": _look(0.85, 0.0),
    "look_right": _look(-0.85, -0.1),
    "look_up": _look(0.0, -0.8),
    "look_down": _look(0.0, 0.8),
    "smoke_left": lambda b, rng: _to_mouth(b, rng, LEFT, "cigarette"),
    "smoke_right": lambda b, rng: _to_mouth(b, rng, RIGHT, "cigarette"),
    "smoke_mouth": smoke_mouth,
    "hands_off_wheel": hands_off_wheel,
}

# Drinking in SF3D is rendered with the driver's left hand so that it means the same as the
# 100-Driver class mapped onto it (C16_Eat_Left); C17_Eat_Right uses the other hand.
SF3D_ACTIVITY: dict[str, str] = {
    "c0": "safe_driving",
    "c1": "text_right",
    "c2": "phone_right",
    "c3": "text_left",
    "c4": "phone_left",
    "c5": "operate_radio",
    "c6": "drink_left",
    "c7": "reach_behind",
    "c8": "hair_and_makeup",
    "c9": "talk_to_passenger",
}

DRIVER100_ACTIVITY: dict[str, str] = {
    "C1_Drive_Safe": "safe_driving",
    "C2_Sleep": "sleep",
    "C3_Yawning": "yawn",
    "C4_Talk_Left": "phone_left",
    "C5_Talk_Right": "phone_right",
    "C6_Text_Left": "text_left",
    "C7_Text_Right": "text_right",
    "C8_Make_Up": "hair_and_makeup",
    "C9_Look_Left": "look_left",
    "C10_Look_Right": "look_right",
    "C11_Look_Up": "look_up",
    "C12_Look_Down": "look_down",
    "C13_Smoke_Left": "smoke_left",
    "C14_Smoke_Right": "smoke_right",
    "C15_Smoke_Mouth": "smoke_mouth",
    "C16_Eat_Left": "drink_left",
    "C17_Eat_Right": "drink_right",
    "C18_Operate_Radio": "operate_radio",
    "C19_Operate_GPS": "operate_gps",
    "C20_Reach_Behind": "reach_behind",
    "C21_Leave_Steering_Wheel": "hands_off_wheel",
    "C22_Talk_to_Passenger": "talk_to_passenger",
}

# The parts whose pose or presence defines each activity: the ground-truth attribution.
# Arms are part of "body", so activities defined by the arm alone list the hand.
DISCRIMINATIVE: dict[str, list[int]] = {
    "safe_driving": [LEFT_HAND, RIGHT_HAND],
    "text_right": [RIGHT_HAND, OBJECT, HEAD],
    "phone_right": [RIGHT_HAND, OBJECT],
    "text_left": [LEFT_HAND, OBJECT, HEAD],
    "phone_left": [LEFT_HAND, OBJECT],
    "operate_radio": [RIGHT_HAND],
    "drink_left": [LEFT_HAND, OBJECT],
    "reach_behind": [RIGHT_HAND, BODY],
    "hair_and_makeup": [RIGHT_HAND, OBJECT],
    "talk_to_passenger": [HEAD],
    "operate_gps": [RIGHT_HAND],
    "drink_right": [RIGHT_HAND, OBJECT],
    "sleep": [HEAD],
    "yawn": [HEAD],
    "look_left": [HEAD],
    "look_right": [HEAD],
    "look_up": [HEAD],
    "look_down": [HEAD],
    "smoke_left": [LEFT_HAND, OBJECT],
    "smoke_right": [RIGHT_HAND, OBJECT],
    "smoke_mouth": [HEAD, OBJECT],
    "hands_off_wheel": [LEFT_HAND, RIGHT_HAND],
}
