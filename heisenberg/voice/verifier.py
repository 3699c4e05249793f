"""The wake word's second stage: a small verifier on openWakeWord's speech embeddings.

openWakeWord turns audio into one 96-value speech embedding per 80 ms frame; its wake word
models look at the last 16 of them (1.28 s). A candidate from the model's score (stage 1)
is confirmed when a logistic regression on the same 16 embeddings (averaged into four
320 ms blocks: 384 values) and the model's score (as a log-odds) says so.

Training takes a fraction of a second, so it happens here, in numpy (Newton's method with an
L2 penalty): ``bench/train_verifier.py`` makes the bundled one (``verifiers/<model>.npz``,
from many synthetic voices and real recordings; see docs/VOICE.md), and ``heisenberg
enroll`` a personal one from the user's own recordings of the wake phrase, stored beside
the config, which then replaces the bundled one.

Why not a library: scikit-learn would bring SciPy and joblib (~100 MB) for one linear model
of 386 numbers; the fit below is 20 lines, tested against the optimum's gradient.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from heisenberg.core.errors import ModelError

WINDOW_FRAMES = 16
"""Embedding frames a verifier looks at (what openWakeWord's models look at)."""
BLOCKS = 4
EMBEDDING = 96
BUNDLED_DIR = Path(__file__).parent / "verifiers"


FEATURES = BLOCKS * EMBEDDING + 1


def block_features(window: np.ndarray, score: float) -> np.ndarray:
    """``(16, 96)`` embeddings and the model's score for them → 385 features: the mean of
    each 320 ms block, then the score's log-odds."""
    w = np.asarray(window, dtype=np.float32)[-WINDOW_FRAMES:]
    blocks = w.reshape(BLOCKS, WINDOW_FRAMES // BLOCKS, EMBEDDING).mean(axis=1).reshape(-1)
    p = min(max(score, 1e-4), 1 - 1e-4)
    return np.append(blocks, np.float32(np.log(p / (1 - p))))


@dataclass
class Verifier:
    weights: np.ndarray
    """One weight per standardized feature."""
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    threshold: float = 0.5
    """Probability at or above which a candidate is confirmed."""
    info: dict[str, object] = field(default_factory=dict)
    """How it was trained (what, how many, when): kept in the file."""

    def score(self, window: np.ndarray, model_score: float) -> float:
        """Probability that ``window`` (the last 16 embedding frames, which the model
        scored ``model_score``) holds the wake word."""
        return float(self.probabilities(block_features(window, model_score)[None, :])[0])

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        z = ((features - self.mean) / self.scale) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    @classmethod
    def train(cls, positives: np.ndarray, negatives: np.ndarray, l2: float = 1.0,
              threshold: float = 0.5, info: dict[str, object] | None = None,
              iterations: int = 30) -> Verifier:
        """Fit on block features (``block_features`` rows); classes weighted equally."""
        if len(positives) < 2 or len(negatives) < 2:
            raise ValueError("a verifier needs at least two positive and two negative examples")
        x = np.concatenate([positives, negatives]).astype(np.float64)
        y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
        sample_w = np.where(y == 1, 0.5 / len(positives), 0.5 / len(negatives)) * len(y)
        mean = x.mean(axis=0)
        scale = x.std(axis=0) + 1e-3
        xs = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
        theta = np.zeros(xs.shape[1])
        penalty = np.full(xs.shape[1], l2)
        penalty[-1] = 0.0  # the bias is not penalized
        for _ in range(iterations):  # Newton's method on the penalized log-loss
            p = 1.0 / (1.0 + np.exp(-np.clip(xs @ theta, -50, 50)))
            grad = xs.T @ (sample_w * (p - y)) + penalty * theta
            hess = (xs * (sample_w * p * (1 - p))[:, None]).T @ xs + np.diag(penalty + 1e-9)
            step = np.linalg.solve(hess, grad)
            theta -= step
            if float(np.abs(step).max()) < 1e-7:
                break
        return cls(theta[:-1].astype(np.float32), float(theta[-1]), mean.astype(np.float32),
                   scale.astype(np.float32), threshold, dict(info or {}))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, weights=self.weights, bias=np.float32(self.bias), mean=self.mean,
                 scale=self.scale, threshold=np.float32(self.threshold),
                 info=np.array(json.dumps(self.info)))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Verifier:
        try:
            with np.load(path, allow_pickle=False) as data:
                weights, mean, scale = data["weights"], data["mean"], data["scale"]
                verifier = cls(weights, float(data["bias"]), mean, scale,
                               float(data["threshold"]), json.loads(str(data["info"])))
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"wake word verifier {str(path)!r} is not readable: {exc}") from exc
        size = FEATURES
        if weights.shape != (size,) or mean.shape != (size,) or scale.shape != (size,):
            raise ModelError(f"wake word verifier {str(path)!r} has the wrong shape "
                             f"({weights.shape}, expected ({size},))")
        return verifier


def personal_path(directory: str | Path, model: str) -> Path:
    return Path(directory).expanduser() / f"{model}.verifier.npz"


def find_verifier(model: str, directory: str, threshold: float | None = None
                  ) -> Verifier | None:
    """The user's enrolled verifier for ``model`` in ``directory``, else the bundled one,
    else None. ``threshold`` overrides the bundled one's (an enrolled one keeps its own)."""
    mine = personal_path(directory, model) if directory else None
    if mine is not None and mine.is_file():
        verifier = Verifier.load(mine)
        verifier.info.setdefault("source", str(mine))
        return verifier
    bundled = BUNDLED_DIR / f"{model}.npz"
    if not bundled.is_file():
        return None
    verifier = Verifier.load(bundled)
    verifier.info.setdefault("source", "bundled")
    if threshold is not None:
        verifier.threshold = threshold
    return verifier
