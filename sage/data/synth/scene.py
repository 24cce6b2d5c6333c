"""Drawing primitives, looks and photometric effects of the SynthDrivers cabin scene.

Everything is drawn twice with identical shapes: once in colour on an RGB canvas and once
with a part id on a label canvas (:class:`Canvas`). Nothing is antialiased, so the label
image is pixel-exact with respect to the rendered image (before JPEG compression), and
occlusion is the drawing order, identical on both canvases.

Scene coordinates are fractions of a canonical square frame (x to the right, y down). The
camera of a domain (:class:`DomainLook`) maps them to pixels with a scale about
:data:`CAMERA_ANCHOR` and a shift, which is how the two domains differ in placement. A
non-square image (SF3D's 640x480) shows the canonical square at its shorter side, centred,
and more of the cabin on either side of it (a wider field of view, nothing stretched): the
cabin shapes reach well beyond the square, so the extra margin is always drawn.

The driver faces the camera: the driver's *right* hand appears on the image *left*, the
passenger side (left-hand-drive car) and the centre console are on the image left too.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw

Pt = tuple[float, float]
RGB = tuple[int, int, int]

# Part ids of the label image (the legend written to ROOT_parts/legend.json).
BACKGROUND, BODY, HEAD, LEFT_HAND, RIGHT_HAND, OBJECT, SPURIOUS = range(7)
PART_NAMES: dict[int, str] = {
    BACKGROUND: "background",
    BODY: "body",
    HEAD: "head",
    LEFT_HAND: "left_hand",
    RIGHT_HAND: "right_hand",
    OBJECT: "object",
    SPURIOUS: "spurious",
}
FOREGROUND_IDS: tuple[int, ...] = (BODY, HEAD, LEFT_HAND, RIGHT_HAND, OBJECT)

# Sticker colours of the spurious cue: ten hues far apart so the cue survives lighting,
# noise and JPEG even when the sticker is only a few pixels wide. Index k is class k's colour.
STICKER_COLOURS: tuple[RGB, ...] = (
    (230, 25, 40),  # red
    (40, 190, 60),  # green
    (255, 225, 20),  # yellow
    (20, 90, 230),  # blue
    (250, 130, 20),  # orange
    (140, 30, 190),  # purple
    (60, 235, 235),  # cyan
    (240, 40, 220),  # magenta
    (250, 250, 250),  # white
    (150, 95, 35),  # brown
)

CAMERA_ANCHOR: Pt = (0.55, 0.6)
STICKER_CENTRE: Pt = (0.885, 0.95)  # on the dashboard, door side: out of every arm's reach
STICKER_SIDE = 0.066  # fraction of the frame (~8 px at 128)


@dataclass(frozen=True)
class DomainLook:
    """How one synthetic domain is photographed: camera, cabin palette, texture, lighting."""

    name: str
    cam_scale: float
    cam_shift: Pt
    roof: RGB
    window: RGB
    scenery: tuple[RGB, ...]
    rear_seat: RGB
    seats: tuple[RGB, ...]
    pillar: RGB
    dash: RGB
    console: RGB
    wheel: RGB
    skins: tuple[RGB, ...]
    hairs: tuple[RGB, ...]
    texture: str  # "blotch" (smooth leather/plastic) or "fabric" (fine weave)
    texture_amp: float
    light_angle: float  # direction the light comes from, radians (0 = from image right)
    light_strength: float
    tint: tuple[float, float, float]
    noise: float  # sigma of the Gaussian pixel noise, in 0..255 units
    shirt_value: tuple[float, float]  # HSV value range of shirts


DOMAIN_LOOKS: dict[str, DomainLook] = {
    # Bright, warm, close-up camera slightly to the door side, smooth beige interior.
    "synth-sf3d": DomainLook(
        name="synth-sf3d",
        cam_scale=1.0,
        cam_shift=(0.03, 0.0),
        roof=(176, 168, 156),
        window=(214, 222, 226),
        scenery=((120, 150, 110), (150, 150, 145), (95, 120, 90), (180, 185, 190)),
        rear_seat=(118, 108, 96),
        seats=((62, 60, 60), (98, 88, 76), (138, 124, 104), (80, 80, 86)),
        pillar=(92, 90, 88),
        dash=(72, 68, 64),
        console=(92, 88, 84),
        wheel=(38, 36, 38),
        # Light skins on darker shirts (was six skins down to (100, 64, 44), shirts 0.35-0.95):
        # skin-toned arms on skin-toned shirts hid the pose, and the small CNN reached only
        # 0.47-0.72 test accuracy here (full and seg alike) against 0.95+ in synth-driver100.
        skins=((255, 222, 196), (240, 196, 160), (222, 170, 130), (196, 134, 96)),
        hairs=((25, 20, 18), (62, 42, 28), (112, 76, 42), (196, 162, 104), (150, 146, 140)),
        texture="blotch",
        texture_amp=9.0,
        light_angle=math.pi,
        light_strength=0.22,
        tint=(1.05, 1.0, 0.9),
        noise=3.0,
        shirt_value=(0.2, 0.8),
    ),
    # Darker cabin seen from further away and lower, cool light from above, woven seats.
    "synth-driver100": DomainLook(
        name="synth-driver100",
        cam_scale=0.86,
        cam_shift=(-0.04, 0.05),
        roof=(74, 78, 86),
        window=(150, 172, 196),
        scenery=((80, 100, 120), (110, 120, 130), (60, 80, 70), (170, 180, 200)),
        rear_seat=(46, 46, 52),
        seats=((30, 30, 34), (52, 50, 56), (40, 44, 52)),
        pillar=(40, 42, 48),
        dash=(30, 30, 34),
        console=(58, 58, 64),
        wheel=(18, 18, 22),
        skins=((250, 220, 190), (236, 200, 166), (220, 180, 140), (200, 156, 118)),
        hairs=((16, 14, 14), (30, 24, 22), (52, 40, 32), (90, 86, 84)),
        texture="fabric",
        texture_amp=14.0,
        light_angle=-math.pi / 2,
        light_strength=0.3,
        tint=(0.9, 0.98, 1.1),
        noise=5.0,
        shirt_value=(0.2, 0.8),
    ),
}


@dataclass(frozen=True)
class SubjectLook:
    """Appearance of one synthetic driver (and of the seat of their car)."""

    skin: RGB
    shirt: RGB
    hair: RGB
    hair_style: str  # "short", "long" or "cap"
    cap: RGB
    long_sleeves: bool
    glasses: bool
    body_scale: float
    seat_offset: Pt
    seat: RGB


@dataclass(frozen=True)
class Style:
    """What :func:`sage.data.synth.render` needs besides the activity: who, and how photographed."""

    subject: SubjectLook
    look: DomainLook


def _jitter(rng: np.random.Generator, rgb: RGB, amount: float) -> RGB:
    c = np.asarray(rgb, float) + rng.normal(0.0, amount, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def make_style(domain: str, rng: np.random.Generator) -> Style:
    """Draw a synthetic subject's appearance for ``domain`` from ``rng``."""
    look = DOMAIN_LOOKS[domain]
    skin = _jitter(rng, look.skins[rng.integers(len(look.skins))], 6)
    hue = rng.random()
    sat = rng.uniform(0.25, 0.85)
    val = rng.uniform(*look.shirt_value)
    shirt = tuple(int(255 * v) for v in colorsys.hsv_to_rgb(hue, sat, val))
    subject = SubjectLook(
        skin=skin,
        shirt=shirt,
        hair=_jitter(rng, look.hairs[rng.integers(len(look.hairs))], 5),
        hair_style=str(rng.choice(["short", "short", "long", "cap"])),
        cap=tuple(int(255 * v) for v in colorsys.hsv_to_rgb(rng.random(), 0.7, 0.6)),
        long_sleeves=bool(rng.random() < 0.5),
        glasses=bool(rng.random() < 0.25),
        body_scale=float(rng.uniform(0.92, 1.08)),
        seat_offset=(float(rng.uniform(-0.03, 0.03)), float(rng.uniform(-0.02, 0.02))),
        seat=_jitter(rng, look.seats[rng.integers(len(look.seats))], 4),
    )
    return Style(subject=subject, look=look)


def shade(rgb: RGB, factor: float) -> RGB:
    """``rgb`` darkened (factor < 1) or lightened (> 1), clipped."""
    return tuple(int(min(255, max(0, v * factor))) for v in rgb)


class Canvas:
    """An RGB image and a part-label image that receive exactly the same shapes.

    Coordinates are scene units; the camera (scale about :data:`CAMERA_ANCHOR`, then a
    shift) maps them to pixels. Lengths (widths, radii) scale with the camera too.
    """

    def __init__(self, size: int | tuple[int, int], scale: float, shift: Pt, fill: RGB) -> None:
        self.width, self.height = (size, size) if isinstance(size, int) else size
        # The canonical square spans the shorter side, centred; a square frame has no offset,
        # so its pixels (and bytes) are those of the square-only canvas.
        self.size = min(self.width, self.height)
        self.x0, self.y0 = (self.width - self.size) / 2, (self.height - self.size) / 2
        self.scale = scale
        self.shift = shift
        self.rgb = Image.new("RGB", (self.width, self.height), fill)
        self.labels = Image.new("L", (self.width, self.height), BACKGROUND)
        self._rgb = ImageDraw.Draw(self.rgb)
        self._lab = ImageDraw.Draw(self.labels)

    def px(self, p: Pt) -> Pt:
        ax, ay = CAMERA_ANCHOR
        return (
            ((p[0] - ax) * self.scale + ax + self.shift[0]) * self.size + self.x0,
            ((p[1] - ay) * self.scale + ay + self.shift[1]) * self.size + self.y0,
        )

    def length(self, v: float) -> float:
        return v * self.scale * self.size

    def polygon(self, pts: Sequence[Pt], rgb: RGB, label: int) -> None:
        xy = [self.px(p) for p in pts]
        self._rgb.polygon(xy, fill=rgb)
        self._lab.polygon(xy, fill=label)

    def ellipse(
        self, c: Pt, rx: float, ry: float, rgb: RGB, label: int, angle: float = 0.0
    ) -> None:
        """A filled ellipse rotated by ``angle`` radians (as a polygon, so rotation is free)."""
        n = 28
        t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
        ca, sa = math.cos(angle), math.sin(angle)
        ex, ey = rx * np.cos(t), ry * np.sin(t)
        pts = list(zip(c[0] + ca * ex - sa * ey, c[1] + sa * ex + ca * ey, strict=True))
        self.polygon(pts, rgb, label)

    def rect(self, c: Pt, w: float, h: float, rgb: RGB, label: int, angle: float = 0.0) -> None:
        """A filled ``w`` x ``h`` rectangle centred on ``c``, rotated by ``angle`` radians."""
        ca, sa = math.cos(angle), math.sin(angle)
        pts = []
        for dx, dy in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)):
            pts.append((c[0] + ca * dx - sa * dy, c[1] + sa * dx + ca * dy))
        self.polygon(pts, rgb, label)

    def box(self, x0: float, y0: float, x1: float, y1: float, rgb: RGB, label: int) -> None:
        self.polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], rgb, label)

    def limb(self, pts: Sequence[Pt], width: float, rgb: RGB, label: int) -> None:
        """A thick polyline with round ends and joints (arms, spokes)."""
        w = max(1, round(self.length(width)))
        xy = [self.px(p) for p in pts]
        self._rgb.line(xy, fill=rgb, width=w, joint="curve")
        self._lab.line(xy, fill=label, width=w, joint="curve")
        r = w / 2
        for x, y in (xy[0], xy[-1]):
            self._rgb.ellipse((x - r, y - r, x + r, y + r), fill=rgb)
            self._lab.ellipse((x - r, y - r, x + r, y + r), fill=label)

    def ring(self, c: Pt, rx: float, ry: float, width: float, rgb: RGB, label: int) -> None:
        """An axis-aligned elliptical ring (the steering-wheel rim)."""
        x, y = self.px(c)
        a, b = self.length(rx), self.length(ry)
        w = max(1, round(self.length(width)))
        bbox = (x - a, y - b, x + a, y + b)
        self._rgb.ellipse(bbox, outline=rgb, width=w)
        self._lab.ellipse(bbox, outline=label, width=w)

    def pixel_square(self, c: Pt, side: float, rgb: RGB, label: int, min_px: int = 4) -> None:
        """An axis-aligned square of at least ``min_px`` pixels a side (the sticker)."""
        x, y = self.px(c)
        s = max(min_px, round(self.length(side)))
        # Kept inside the frame (1 px margin) so the cue never loses pixels to the border.
        x0 = min(max(round(x - s / 2), 1), self.width - s - 1)
        y0 = min(max(round(y - s / 2), 1), self.height - s - 1)
        bbox = (x0, y0, x0 + s - 1, y0 + s - 1)
        self._rgb.rectangle(bbox, fill=rgb)
        self._lab.rectangle(bbox, fill=label)


def draw_cabin_back(cv: Canvas, style: Style, rng: np.random.Generator, seat_shift: Pt) -> None:
    """Everything behind the driver: roof, rear window with scenery, rear bench, seats."""
    lk, sub = style.look, style.subject
    # Rear window with a few blurred shapes of the outside world, varying per image.
    cv.polygon([(-0.3, 0.04), (1.3, 0.04), (1.2, 0.36), (-0.2, 0.36)], lk.window, BACKGROUND)
    for _ in range(int(rng.integers(2, 5))):
        x = rng.uniform(-0.1, 1.1)
        w, h = rng.uniform(0.08, 0.3), rng.uniform(0.05, 0.14)
        col = _jitter(rng, lk.scenery[rng.integers(len(lk.scenery))], 8)
        cv.box(x, 0.36 - h, x + w, 0.36, col, BACKGROUND)
    cv.box(-0.3, -0.3, 1.3, 0.04, lk.roof, BACKGROUND)
    # Rear bench and the pillars framing the window.
    cv.polygon([(-0.3, 0.34), (1.3, 0.34), (1.3, 1.3), (-0.3, 1.3)], lk.rear_seat, BACKGROUND)
    cv.polygon([(-0.3, -0.3), (0.02, -0.3), (0.06, 0.5), (-0.3, 0.5)], lk.pillar, BACKGROUND)
    cv.polygon([(1.3, -0.3), (0.94, -0.3), (0.9, 0.5), (1.3, 0.5)], lk.pillar, BACKGROUND)
    # Passenger seat (image left) and the driver's seat, which moves with the driver.
    pseat = shade(sub.seat, 0.9)
    cv.polygon([(-0.25, 0.34), (0.2, 0.32), (0.23, 1.3), (-0.25, 1.3)], pseat, BACKGROUND)
    cv.box(-0.06, 0.2, 0.12, 0.34, pseat, BACKGROUND)
    dx, dy = seat_shift
    cv.polygon(
        [(0.34 + dx, 0.36 + dy), (0.78 + dx, 0.36 + dy), (0.8 + dx, 1.3), (0.32 + dx, 1.3)],
        sub.seat,
        BACKGROUND,
    )
    cv.ellipse((0.56 + dx, 0.37 + dy), 0.22, 0.05, sub.seat, BACKGROUND)
    cv.box(0.46 + dx, 0.16 + dy, 0.66 + dx, 0.33 + dy, shade(sub.seat, 1.12), BACKGROUND)


def draw_cabin_front(cv: Canvas, style: Style, wheel_c: Pt, wheel_r: Pt) -> None:
    """Everything between the camera and the driver's torso: console, GPS, dashboard, wheel."""
    lk = style.look
    # Centre console with the radio (low) and a GPS screen (higher) on the passenger side.
    cv.polygon([(-0.3, 0.78), (0.27, 0.79), (0.31, 1.3), (-0.3, 1.3)], lk.console, BACKGROUND)
    cv.box(0.06, 0.82, 0.23, 0.9, shade(lk.console, 0.45), BACKGROUND)
    cv.box(0.08, 0.835, 0.16, 0.855, (120, 200, 140), BACKGROUND)
    cv.ellipse((0.195, 0.86), 0.018, 0.018, shade(lk.console, 1.5), BACKGROUND)
    cv.box(0.155, 0.72, 0.175, 0.79, shade(lk.console, 0.7), BACKGROUND)
    cv.box(0.07, 0.6, 0.26, 0.73, (28, 28, 32), BACKGROUND)
    cv.box(0.085, 0.615, 0.245, 0.715, (90, 150, 190), BACKGROUND)
    # Dashboard strip across the bottom (the sticker sits on it, door side).
    cv.polygon([(0.27, 0.93), (1.3, 0.91), (1.3, 1.3), (0.27, 1.3)], lk.dash, BACKGROUND)
    # Steering wheel in front of the driver's torso; hands are drawn over its rim later.
    cx, cy = wheel_c
    hub = shade(lk.wheel, 1.4)
    cv.limb([(cx, cy + 0.02), (cx - wheel_r[0] * 0.93, cy + 0.03)], 0.028, hub, BACKGROUND)
    cv.limb([(cx, cy + 0.02), (cx + wheel_r[0] * 0.93, cy + 0.03)], 0.028, hub, BACKGROUND)
    cv.ellipse((cx, cy + 0.02), 0.06, 0.045, hub, BACKGROUND)
    cv.ring(wheel_c, wheel_r[0], wheel_r[1], 0.032, lk.wheel, BACKGROUND)


def draw_sticker(
    cv: Canvas, rng: np.random.Generator, colour: int, side: float = STICKER_SIDE
) -> None:
    """The spurious cue: a coloured square on the dashboard, drawn last so nothing hides it."""
    c = (STICKER_CENTRE[0] + rng.normal(0, 0.008), STICKER_CENTRE[1] + rng.normal(0, 0.006))
    cv.pixel_square(c, side, STICKER_COLOURS[colour], SPURIOUS)


def _texture(kind: str, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A zero-mean texture field in roughly [-1, 1] of shape (height, width)."""
    if kind == "blotch":
        small = rng.standard_normal((6, 6)).astype(np.float32)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) * 0.7
    # Fabric: a diagonal weave plus fine grain, at a frequency tied to the (shorter) frame side.
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    period = max(3.0, min(width, height) / 32)
    phase = rng.uniform(0, 2 * math.pi)
    weave = np.sin((xx + yy) * (2 * math.pi / period) + phase) * np.sin(
        (xx - yy) * (2 * math.pi / period)
    )
    grain = rng.standard_normal((height, width)).astype(np.float32) * 0.4
    return weave * 0.8 + grain


def photometric(cv: Canvas, style: Style, rng: np.random.Generator) -> np.ndarray:
    """Cabin texture (background only), a lighting gradient, colour tint and pixel noise."""
    lk = style.look
    img = np.asarray(cv.rgb, dtype=np.float32)
    labels = np.asarray(cv.labels)
    bg = (labels == BACKGROUND).astype(np.float32)
    img = img + (_texture(lk.texture, rng, cv.width, cv.height) * lk.texture_amp * bg)[..., None]
    angle = lk.light_angle + rng.normal(0, 0.35)
    strength = lk.light_strength * rng.uniform(0.7, 1.3)
    ramp_x = np.linspace(-1.0, 1.0, cv.width, dtype=np.float32)
    ramp_y = np.linspace(-1.0, 1.0, cv.height, dtype=np.float32)
    # Brighter towards the light: the gradient points from the light's side into the frame.
    gain = 1.0 + 0.5 * strength * (
        math.cos(angle) * ramp_x[None, :] + math.sin(angle) * ramp_y[:, None]
    )
    gain *= rng.uniform(0.88, 1.12)
    tint = np.asarray(lk.tint, dtype=np.float32) * rng.uniform(0.97, 1.03, 3).astype(np.float32)
    img = img * gain[..., None] * tint
    img += rng.standard_normal(img.shape, dtype=np.float32) * lk.noise
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
