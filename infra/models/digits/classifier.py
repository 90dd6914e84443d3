"""The judge of the digit models: a classifier trained on the real digits (never on generated ones).

An RBF support-vector machine on the same 16x16 upscaled pixels the diffusion model learns from;
trained on the training split, it is about 99% accurate on the held-out real digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .data import load_digits


@dataclass
class DigitClassifier:
    model: object
    test_accuracy: float  #: on the held-out real digits

    @classmethod
    def train(cls) -> DigitClassifier:
        from sklearn.svm import SVC

        train, test = load_digits("train"), load_digits("test")
        model = SVC(gamma="scale", C=10.0).fit(_features(train.images), train.labels.numpy())
        accuracy = float((model.predict(_features(test.images)) == test.labels.numpy()).mean())
        return cls(model, accuracy)

    def predict(self, images01: torch.Tensor) -> np.ndarray:
        """Digits of (N, 1, 16, 16) images in [0, 1]."""
        return self.model.predict(_features(images01 * 2 - 1))


def _features(images: torch.Tensor) -> np.ndarray:
    return images.reshape(len(images), -1).numpy().astype(np.float64)
