"""Render one SynthDrivers image and its part-label image.

:func:`render` composes the scene back to front: cabin behind the driver, torso and head,
then console/dashboard/steering wheel (which hide the lower torso), then arms, hands and
held objects (in front of the wheel), and last the sticker. Both canvases receive the same
shapes in the same order, so the labels are exact; texture, lighting and noise are applied
to the colour image afterwards and never move an edge.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .activities import ACTIVITIES, LEFT, RIGHT, WHEEL_CENTRE, WHEEL_RADII, Body, Held, Pose
from .activities import make_body as _make_body
from .scene import (
    BODY,
    HEAD,
    LEFT_HAND,
    OBJECT,
    RIGHT_HAND,
    STICKER_COLOURS,
    STICKER_SIDE,
    Canvas,
    Pt,
    Style,
    SubjectLook,
    draw_cabin_back,
    draw_cabin_front,
    draw_sticker,
    photometric,
    shade,
)

EYE = (30, 24, 24)


def _rot(c: Pt, angle: float) -> Callable[[float, float], Pt]:
    """Offsets (dx, dy) rotated by ``angle`` about ``c``, as scene points."""
    ca, sa = math.cos(angle), math.sin(angle)

    def f(dx: float, dy: float) -> Pt:
        return (c[0] + ca * dx - sa * dy, c[1] + sa * dx + ca * dy)

    return f


def _draw_long_hair(cv: Canvas, b: Body, pose: Pose, sub: SubjectLook) -> None:
    rx, ry = b.head_r
    x = b.head[0] - pose.yaw * 0.3 * rx
    cv.polygon(
        [
            (x - 1.1 * rx, b.head[1]),
            (x + 1.1 * rx, b.head[1]),
            (x + 1.25 * rx, b.head[1] + 1.9 * ry),
            (x - 1.25 * rx, b.head[1] + 1.9 * ry),
        ],
        sub.hair,
        HEAD,
    )


def _draw_torso(cv: Canvas, b: Body, sr: Pt, sl: Pt, sub: SubjectLook) -> None:
    k, cx = b.scale, b.cx
    nw = b.neck_w
    # Neck first so the collar of the shirt overlaps it.
    neck_top = b.head[1] + 0.5 * b.head_r[1]
    cv.box(cx - nw / 2, neck_top, cx + nw / 2, sr[1], shade(sub.skin, 0.88), BODY)
    top = min(sr[1], sl[1]) - 0.035 * k
    cv.polygon(
        [
            (sr[0] - 0.04 * k, sr[1] + 0.05 * k),
            (sr[0], sr[1] - 0.03 * k),
            (cx - nw * 0.75, top),
            (cx + nw * 0.75, top),
            (sl[0], sl[1] - 0.03 * k),
            (sl[0] + 0.04 * k, sl[1] + 0.05 * k),
            b.hip_l,
            b.hip_r,
        ],
        sub.shirt,
        BODY,
    )
    for s in (sr, sl):
        cv.ellipse((s[0], s[1] + 0.01 * k), 0.045 * k, 0.04 * k, sub.shirt, BODY)
    cv.polygon(
        [(cx - nw * 0.6, top), (cx + nw * 0.6, top), (cx, top + 0.06 * k)],
        shade(sub.skin, 0.93),
        BODY,
    )


def _draw_head(cv: Canvas, b: Body, pose: Pose, sub: SubjectLook) -> None:
    rx, ry = b.head_r
    yaw, pitch = pose.yaw, pose.pitch
    centre = (b.head[0], b.head[1] + 0.015 * max(pitch, 0.0))
    p = _rot(centre, pose.roll)

    def at(u: float, v: float) -> Pt:  # head units -> scene units, rotated with the head
        return p(u * rx, v * ry)

    hair = sub.hair
    top = sub.cap if sub.hair_style == "cap" else hair
    cv.ellipse(at(-0.25 * yaw, -0.1 - 0.06 * pitch), 1.07 * rx, 1.03 * ry, hair, HEAD, pose.roll)
    if abs(yaw) <= 0.4:  # both ears peek out beside a face seen from the front
        for e in (-1, 1):
            cv.ellipse(at(e * 0.97, 0.12), 0.17 * rx, 0.24 * ry, shade(sub.skin, 0.9), HEAD)
    face_w = 0.95 - 0.12 * abs(yaw)
    cv.ellipse(
        at(0.14 * yaw, 0.08 + 0.1 * pitch), face_w * rx, 0.92 * ry, sub.skin, HEAD, pose.roll
    )
    if abs(yaw) > 0.4:  # one ear, on the side the face turned away from
        side = -math.copysign(1.0, yaw)
        cv.ellipse(at(side * 0.72, 0.12), 0.16 * rx, 0.24 * ry, shade(sub.skin, 0.88), HEAD)
    # Fringe / cap: looking down shows more of the top of the head.
    down = max(pitch, 0.0)
    cv.ellipse(
        at(-0.12 * yaw, -0.58 + 0.3 * down),
        0.99 * rx,
        (0.48 + 0.25 * down) * ry,
        top,
        HEAD,
        pose.roll,
    )
    if sub.hair_style == "cap":  # visor towards where the face points
        cv.ellipse(at(0.3 * yaw, -0.3 + 0.3 * down), 0.8 * rx, 0.2 * ry, shade(top, 0.8), HEAD)
    ey = -0.02 + 0.5 * pitch
    ex = 0.42 * yaw
    sep = 0.38 * (1 - 0.45 * abs(yaw))
    eye_h = 0.03 if (pose.eyes_closed or pitch > 0.6) else 0.08
    if ey < 0.75:
        for e in (-1, 1):
            if abs(yaw) > 0.6 and e * yaw > 0:
                continue  # the far eye is hidden by the turn
            cv.ellipse(at(ex + e * sep, ey), 0.12 * rx, eye_h * ry, EYE, HEAD, pose.roll)
        if sub.glasses:
            cv.limb([at(ex - sep - 0.2, ey), at(ex + sep + 0.2, ey)], 0.012, (20, 20, 20), HEAD)
    nose_y = ey + 0.25
    if nose_y < 0.85:
        cv.limb(
            [at(ex, ey + 0.08), at(ex + 0.22 * yaw, nose_y)], 0.014, shade(sub.skin, 0.78), HEAD
        )
    my = min(0.55 + 0.3 * pitch, 0.85)
    mx = 0.45 * yaw
    if pose.mouth == "wide":
        cv.ellipse(at(mx, my - 0.02), 0.2 * rx, 0.2 * ry, (60, 20, 24), HEAD, pose.roll)
    elif pose.mouth == "open":
        cv.ellipse(at(mx, my), 0.16 * rx, 0.09 * ry, (70, 24, 28), HEAD, pose.roll)
    else:
        cv.ellipse(at(mx, my), 0.2 * rx, 0.04 * ry, shade(sub.skin, 0.7), HEAD, pose.roll)


def _draw_arm(cv: Canvas, b: Body, s: Pt, e: Pt, h: Pt, sub: SubjectLook) -> None:
    k = b.scale
    fore = sub.shirt if sub.long_sleeves else shade(sub.skin, 0.97)
    cv.limb([s, e], 0.056 * k, shade(sub.shirt, 0.95), BODY)
    cv.limb([e, h], 0.044 * k, fore, BODY)
    if sub.long_sleeves:  # a bare wrist just before the hand
        d = math.hypot(h[0] - e[0], h[1] - e[1]) or 1.0
        w = (h[0] - (h[0] - e[0]) * 0.035 * k / d, h[1] - (h[1] - e[1]) * 0.035 * k / d)
        cv.limb([w, h], 0.038 * k, shade(sub.skin, 0.97), BODY)


def _draw_hand(cv: Canvas, b: Body, e: Pt, h: Pt, sub: SubjectLook, label: int) -> None:
    k = b.scale
    angle = math.atan2(h[1] - e[1], h[0] - e[0])
    cv.ellipse(h, 0.036 * k, 0.03 * k, shade(sub.skin, 1.04), label, angle)


def _draw_object(cv: Canvas, b: Body, obj: Held) -> None:
    k, c, a = b.scale, obj.centre, obj.angle
    if obj.kind == "phone":
        cv.rect(c, 0.046 * k, 0.074 * k, obj.colour, OBJECT, a)
        cam = _rot(c, a)(0.0, -0.024 * k)
        cv.ellipse(cam, 0.007 * k, 0.007 * k, shade(obj.colour, 0.5), OBJECT)
    elif obj.kind == "phone_ear":
        cv.rect(c, 0.032 * k, 0.08 * k, obj.colour, OBJECT, a)
    elif obj.kind == "cup":
        cv.rect(c, 0.05 * k, 0.07 * k, obj.colour, OBJECT, a)
        rim = _rot(c, a)(0.0, -0.035 * k)
        cv.ellipse(rim, 0.025 * k, 0.009 * k, shade(obj.colour, 0.75), OBJECT, a)
        band = _rot(c, a)(0.0, 0.005 * k)
        cv.rect(band, 0.05 * k, 0.02 * k, shade(obj.colour, 0.8), OBJECT, a)
    elif obj.kind == "comb":
        cv.rect(c, 0.1 * k, 0.018 * k, obj.colour, OBJECT, a)
        teeth = _rot(c, a)(0.0, 0.012 * k)
        cv.rect(teeth, 0.09 * k, 0.01 * k, shade(obj.colour, 0.7), OBJECT, a)
    elif obj.kind == "cigarette":
        d = (math.cos(a) * 0.02 * k, math.sin(a) * 0.02 * k)
        cv.limb([(c[0] - d[0], c[1] - d[1]), (c[0] + d[0], c[1] + d[1])], 0.012, obj.colour, OBJECT)
        cv.ellipse((c[0] + d[0], c[1] + d[1]), 0.007, 0.007, (230, 110, 40), OBJECT)
    else:
        raise ValueError(f"unknown held object {obj.kind!r}")


def render(
    rng: np.random.Generator,
    activity: str,
    style: Style,
    size: int | tuple[int, int],
    *,
    sticker: int | None = None,
    sticker_side: float = STICKER_SIDE,
    photometric_effects: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Render ``activity`` performed by ``style.subject`` in ``style.look``'s cabin.

    Args:
        rng: the only source of randomness (pose jitter, camera jitter, lighting, noise);
            the same generator state gives the same image.
        activity: a key of :data:`sage.data.synth.activities.ACTIVITIES`.
        style: subject appearance and domain look, see :func:`sage.data.synth.make_style`.
        size: side of the square image in pixels, or ``(width, height)`` (the canonical
            square at the shorter side, centred, with more cabin beside it).
        sticker: index into :data:`STICKER_COLOURS` of the spurious dashboard sticker, or
            ``None`` for no sticker.
        sticker_side: the sticker's side as a fraction of the frame.
        photometric_effects: ``False`` skips texture, lighting and noise (flat colours),
            which is only useful to check that colours and labels line up.

    Returns:
        ``(image, parts)``: an (height, width, 3) uint8 RGB image and an (height, width)
        uint8 part-label image (ids of :data:`sage.data.synth.scene.PART_NAMES`).
    """
    if activity not in ACTIVITIES:
        raise ValueError(f"unknown activity {activity!r}; known: {sorted(ACTIVITIES)}")
    if sticker is not None and not 0 <= sticker < len(STICKER_COLOURS):
        raise ValueError(f"sticker index {sticker} outside 0..{len(STICKER_COLOURS) - 1}")
    look, sub = style.look, style.subject
    scale = look.cam_scale * (1 + rng.normal(0, 0.025))
    shift = (look.cam_shift[0] + rng.normal(0, 0.012), look.cam_shift[1] + rng.normal(0, 0.01))
    cv = Canvas(size, scale, shift, look.roof)

    body = _make_body(sub, rng)
    pose = ACTIVITIES[activity](body, rng)
    # A turned torso pulls the right shoulder back (towards the centre of the image) and
    # brings the left one forward; elbows follow their shoulder half-way.
    t = abs(pose.torso_turn)
    sr = (body.shoulder_r[0] + 0.06 * t * body.scale, body.shoulder_r[1] - 0.02 * t * body.scale)
    sl = (body.shoulder_l[0] - 0.03 * t * body.scale, body.shoulder_l[1])
    shoulders = {RIGHT: sr, LEFT: sl}
    for side in (RIGHT, LEFT):
        moved = shoulders[side][0] - body.shoulder(side)[0]
        ex, ey = pose.elbows[side]
        pose.elbows[side] = (ex + moved / 2, ey)

    seat = (sub.seat_offset[0], sub.seat_offset[1])
    draw_cabin_back(cv, style, rng, seat)
    if sub.hair_style == "long":
        _draw_long_hair(cv, body, pose, sub)
    _draw_torso(cv, body, sr, sl, sub)
    _draw_head(cv, body, pose, sub)
    draw_cabin_front(cv, style, WHEEL_CENTRE, WHEEL_RADII)
    for side in (RIGHT, LEFT):
        _draw_arm(cv, body, shoulders[side], pose.elbows[side], pose.hands[side], sub)
    for obj in pose.objects:
        if obj.under_hand:
            _draw_object(cv, body, obj)
    for side, label in ((RIGHT, RIGHT_HAND), (LEFT, LEFT_HAND)):
        _draw_hand(cv, body, pose.elbows[side], pose.hands[side], sub, label)
    for obj in pose.objects:
        if not obj.under_hand:
            _draw_object(cv, body, obj)
    if sticker is not None:
        draw_sticker(cv, rng, sticker, sticker_side)

    parts = np.array(cv.labels, dtype=np.uint8)
    image = photometric(cv, style, rng) if photometric_effects else np.array(cv.rgb, np.uint8)
    return image, parts
