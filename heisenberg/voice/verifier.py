"""The wake word's second stage: a small verifier on openWakeWord's speech embeddings.

openWakeWord turns audio into one 96-value speech embedding per 80 ms frame; its wake word
models look at the last 16 of them (1.28 s). A candidate from the model's score (stage 1)
is confirmed when a small classifier on the same 16 embeddings (averaged into four 320 ms
blocks: 384 values) and the model's score (as a log-odds) says so: a logistic regression,
or the same with one hidden layer of rectified units (``hidden``).

Training happens here, in numpy: ``bench/train_verifier.py`` makes the bundled one
(``verifiers/<model>.npz``: one hidden layer of 64, from many synthetic voices and real
recordings; see docs/VOICE.md; ~10 s), and ``heisenberg enroll`` a personal one (linear:
Newton's method with an L2 penalty, a fraction of a second) from the user's own recordings
of the wake phrase, stored beside the config, which then replaces the bundled one.

The same classifier, on other inputs, is stage 3's acoustic check: ``verifiers/<model>.whisper.npz``
(``bench/train_wake_check.py``) takes whisper's encoder on the last 2 s of audio, averaged into
ten 200 ms blocks (``WhisperSTT.phrase_features``: 3,840 values for tiny.en).

Why not a library: scikit-learn would bring SciPy and joblib (~100 MB) for two models of a
few thousand numbers; the fits below are ~20 lines each, tested against what they optimize.
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

BUNDLED_GATE = 0.9
"""An enrolled (personal) verifier confirms a candidate only where the bundled verifier's
probability reaches this too. Trained on a few takes of one voice, a personal verifier cannot
tell "Hey Jarvis" from "Hey Jervis" in that voice (it let half of such near misses through);
the bundled one was trained on near misses of many voices. Chosen with dev voices as the
user (docs/VOICE.md)."""


def block_features(window: np.ndarray, score: float) -> np.ndarray:
    """``(16, 96)`` embeddings and the model's score for them → 385 features: the mean of
    each 320 ms block, then the score's log-odds."""
    w = np.asarray(window, dtype=np.float32)[-WINDOW_FRAMES:]
    blocks = w.reshape(BLOCKS, WINDOW_FRAMES // BLOCKS, EMBEDDING).mean(axis=1).reshape(-1)
    p = min(max(score, 1e-4), 1 - 1e-4)
    return np.append(blocks, np.float32(np.log(p / (1 - p))))


def _training_set(positives: np.ndarray, negatives: np.ndarray, dtype: type
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Both fits' data: standardized features, labels, sample weights that weigh the two
    classes equally, and the standardization (mean, scale)."""
    if len(positives) < 2 or len(negatives) < 2:
        raise ValueError("a verifier needs at least two positive and two negative examples")
    x: np.ndarray = np.concatenate([positives, negatives]).astype(dtype)
    y: np.ndarray = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))]).astype(
        dtype)
    sample_w: np.ndarray = (np.where(y == 1, 0.5 / len(positives), 0.5 / len(negatives))
                * len(y)).astype(dtype)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-3
    return (x - mean) / scale, y, sample_w, mean, scale


@dataclass
class Verifier:
    weights: np.ndarray
    """One weight per standardized feature (linear), or per hidden unit."""
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    threshold: float = 0.5
    """Probability at or above which a candidate is confirmed."""
    info: dict[str, object] = field(default_factory=dict)
    """How it was trained (what, how many, when): kept in the file."""
    hidden: tuple[np.ndarray, np.ndarray] | None = None
    """``(weights (features, units), biases (units,))`` of the hidden layer, if any."""
    gate: tuple[Verifier, float] | None = None
    """Another verifier and the probability it must give too (``with_bundled_gate``); not
    stored in the file."""

    def score(self, window: np.ndarray, model_score: float) -> float:
        """Probability that ``window`` (the last 16 embedding frames, which the model
        scored ``model_score``) holds the wake word; 0 where the gate's verifier gives
        less than its probability."""
        features = block_features(window, model_score)[None, :]
        if self.gate is not None:
            other, least = self.gate
            if float(other.probabilities(features)[0]) < least:
                return 0.0
        return float(self.probabilities(features)[0])

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        x = (features - self.mean) / self.scale
        if self.hidden is not None:
            x = np.maximum(0.0, x @ self.hidden[0] + self.hidden[1])
        z = x @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    @classmethod
    def train_hidden(cls, positives: np.ndarray, negatives: np.ndarray, units: int = 64,
                     decay: float = 1e-3, epochs: int = 10, seed: int = 0,
                     threshold: float = 0.5, info: dict[str, object] | None = None,
                     members: int = 1) -> Verifier:
        """One hidden layer of ``units`` rectified units, fit by Adam on minibatches of the
        class-weighted log-loss with weight decay ``decay``; deterministic for a ``seed``.

        ``members`` > 1: that many such networks (seeds ``seed``, ``seed + 1``, ...) whose
        log-odds are averaged, stored as one network with ``members * units`` hidden units
        (the same file, the same cost per unit). One network's recall at a high threshold
        moved by ±2-4 points from seed to seed on held-out voices; the average is steadier."""
        x, y, sample_w, mean, scale = _training_set(positives, negatives, np.float32)
        nets = [cls._fit_hidden(x, y, sample_w, units, decay, epochs, seed + k)
                for k in range(members)]
        hidden = (np.concatenate([n[0] for n in nets], axis=1),
                  np.concatenate([n[1] for n in nets]))
        weights = np.concatenate([n[2] for n in nets]) / members
        bias = float(np.mean([n[3][0] for n in nets]))
        return cls(weights, bias, mean, scale, threshold, dict(info or {}), hidden=hidden)

    @staticmethod
    def _fit_hidden(x: np.ndarray, y: np.ndarray, sample_w: np.ndarray, units: int,
                    decay: float, epochs: int, seed: int) -> list[np.ndarray]:
        """``[hidden weights, hidden biases, output weights, output bias]`` of one network."""
        rng = np.random.default_rng(seed)
        params = [rng.normal(0, 1 / np.sqrt(x.shape[1]), (x.shape[1], units)).astype(np.float32),
                  np.zeros(units, np.float32),
                  rng.normal(0, 1 / np.sqrt(units), units).astype(np.float32),
                  np.zeros(1, np.float32)]
        moment = [np.zeros_like(p) for p in params]
        square = [np.zeros_like(p) for p in params]
        step, rate, batch = 0, 1e-3, 512
        for _ in range(epochs):
            order = rng.permutation(len(x))
            for j in range(0, len(x), batch):
                b = order[j:j + batch]
                h = np.maximum(0.0, x[b] @ params[0] + params[1])
                p = 1.0 / (1.0 + np.exp(-np.clip(h @ params[2] + params[3][0], -50, 50)))
                g = (p - y[b]) * sample_w[b] / len(b)
                back = np.outer(g, params[2]) * (h > 0)
                grads = [x[b].T @ back + decay * params[0], back.sum(axis=0),
                         h.T @ g + decay * params[2], np.array([g.sum()], np.float32)]
                step += 1
                for i, grad in enumerate(grads):
                    moment[i] = 0.9 * moment[i] + 0.1 * grad
                    square[i] = 0.999 * square[i] + 0.001 * grad * grad
                    params[i] -= (rate * (moment[i] / (1 - 0.9 ** step))
                                  / (np.sqrt(square[i] / (1 - 0.999 ** step)) + 1e-8))
        return params

    @classmethod
    def train(cls, positives: np.ndarray, negatives: np.ndarray, l2: float = 1.0,
              threshold: float = 0.5, info: dict[str, object] | None = None,
              iterations: int = 30) -> Verifier:
        """Fit on block features (``block_features`` rows); classes weighted equally."""
        x, y, sample_w, mean, scale = _training_set(positives, negatives, np.float64)
        xs = np.hstack([x, np.ones((len(x), 1))])
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
        layer = {} if self.hidden is None else {"hidden_weights": self.hidden[0],
                                                "hidden_biases": self.hidden[1]}
        np.savez(tmp, weights=self.weights, bias=np.float32(self.bias), mean=self.mean,
                 scale=self.scale, threshold=np.float32(self.threshold),
                 info=np.array(json.dumps(self.info)),
                 **layer)  # type: ignore[arg-type]  # (numpy's stub: allow_pickle)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, size: int | None = FEATURES) -> Verifier:
        """``size``: the number of features it must take (None: any, as its file says)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                weights, mean, scale = data["weights"], data["mean"], data["scale"]
                hidden = ((data["hidden_weights"], data["hidden_biases"])
                          if "hidden_weights" in data else None)
                verifier = cls(weights, float(data["bias"]), mean, scale,
                               float(data["threshold"]), json.loads(str(data["info"])),
                               hidden=hidden)
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"wake word verifier {str(path)!r} is not readable: {exc}") from exc
        size = mean.shape[0] if size is None else size
        units = (size,) if hidden is None else hidden[1].shape
        if (mean.shape != (size,) or scale.shape != (size,) or weights.shape != units
                or (hidden is not None and hidden[0].shape != (size, *units))):
            raise ModelError(f"wake word verifier {str(path)!r} has the wrong shape "
                             f"({weights.shape}, expected {units})")
        return verifier


def personal_path(directory: str | Path, model: str) -> Path:
    return Path(directory).expanduser() / f"{model}.verifier.npz"


def bundled_verifier(model: str) -> Verifier | None:
    """The verifier shipped for ``model`` (``verifiers/<model>.npz``), if there is one."""
    path = BUNDLED_DIR / f"{model}.npz"
    return Verifier.load(path) if path.is_file() else None


def bundled_phrase_check(model: str) -> Verifier | None:
    """The acoustic check shipped for ``model`` (``verifiers/<model>.whisper.npz``: a
    classifier on whisper's encoder, ``bench/train_wake_check.py``), if there is one."""
    path = BUNDLED_DIR / f"{model}.whisper.npz"
    return Verifier.load(path, size=None) if path.is_file() else None


def with_bundled_gate(personal: Verifier, model: str) -> Verifier:
    """``personal``, confirming only what the bundled verifier of ``model`` (if there is
    one) gives at least ``BUNDLED_GATE``."""
    bundled = bundled_verifier(model)
    if bundled is not None:
        personal.gate = (bundled, BUNDLED_GATE)
        personal.info["bundled_gate"] = BUNDLED_GATE
    return personal


def find_verifier(model: str, directory: str, threshold: float | None = None
                  ) -> Verifier | None:
    """The user's enrolled verifier for ``model`` in ``directory`` (gated by the bundled
    one), else the bundled one, else None. ``threshold`` overrides the bundled one's (an
    enrolled one keeps its own)."""
    mine = personal_path(directory, model) if directory else None
    if mine is not None and mine.is_file():
        personal = with_bundled_gate(Verifier.load(mine), model)
        personal.info.setdefault("source", str(mine))
        return personal
    bundled = bundled_verifier(model)
    if bundled is None:
        return None
    bundled.info.setdefault("source", "bundled")
    if threshold is not None:
        bundled.threshold = threshold
    return bundled
