"""Walks through latent space and between classes, with numpy only.

Spherical interpolation (slerp) turns the direction of z along the great circle from z0 to
z1 and moves its norm linearly from |z0| to |z1|: a Gaussian prior puts almost all of its
mass near one norm, which a straight line between two samples leaves (its midpoint is
shorter), so slerp keeps every step as typical as the endpoints.
"""

from __future__ import annotations

import functools

import numpy as np

_PARALLEL = 1e-6  # below this sine of the angle, two directions count as parallel (or opposite)


def fractions(steps: int) -> np.ndarray:
    """(steps,) float64 t from 0 to 1, both ends included."""
    return np.linspace(0.0, 1.0, steps)


def lerp(start: np.ndarray, end: np.ndarray, steps: int) -> np.ndarray:
    """(steps, D) float32: (1 - t) start + t end."""
    t = fractions(steps)[:, None]
    path = (1.0 - t) * start.astype(np.float64) + t * end.astype(np.float64)
    return _with_exact_ends(path, start, end)


def slerp(start: np.ndarray, end: np.ndarray, steps: int) -> np.ndarray:
    """(steps, D) float32: the direction along the great circle, the norm linearly between the ends'."""
    z0, z1 = start.astype(np.float64), end.astype(np.float64)
    n0, n1 = float(np.linalg.norm(z0)), float(np.linalg.norm(z1))
    if n0 == 0.0 or n1 == 0.0:
        return lerp(start, end, steps)  # a zero vector has no direction to turn
    u0, u1 = z0 / n0, z1 / n1
    t = fractions(steps)[:, None]
    cosine = float(np.clip(u0 @ u1, -1.0, 1.0))
    angle = float(np.arccos(cosine))
    if np.sin(angle) >= _PARALLEL:
        directions = (np.sin((1.0 - t) * angle) * u0 + np.sin(t * angle) * u1) / np.sin(angle)
    elif cosine > 0:  # parallel: the direction stays
        directions = np.repeat(u0[None, :], steps, axis=0)
    else:  # opposite: every great circle joins them; take the one through an orthogonal direction
        across = _orthogonal(u0)
        directions = np.cos(np.pi * t) * u0 + np.sin(np.pi * t) * across
    norms = (1.0 - t) * n0 + t * n1
    return _with_exact_ends(directions * norms, start, end)


def class_mix(start: int, end: int, classes: int, steps: int) -> np.ndarray:
    """(steps, classes) float32 weights from one-hot(start) to one-hot(end), linearly."""
    return lerp(one_hot(np.array([start]), classes)[0], one_hot(np.array([end]), classes)[0], steps)


def one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    """(N,) int labels -> (N, classes) float32 one-hot rows (a new array, gathered from the identity)."""
    return _identity(classes)[labels]


@functools.cache
def _identity(classes: int) -> np.ndarray:
    identity = np.eye(classes, dtype=np.float32)
    identity.flags.writeable = False
    return identity


def _orthogonal(unit: np.ndarray) -> np.ndarray:
    """A unit vector orthogonal to `unit` (Gram-Schmidt on the axis it leans on least)."""
    axis = np.zeros_like(unit)
    axis[int(np.argmin(np.abs(unit)))] = 1.0
    across = axis - (axis @ unit) * unit
    return across / np.linalg.norm(across)


def _with_exact_ends(path: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """float32, with the first and last rows exactly the endpoints (no rounding drift)."""
    walk = path.astype(np.float32)
    walk[0], walk[-1] = start, end
    return walk
